"""People, their individual accounts, cards, contributions, and the journal lines that
operators post (allocations and adjustments)."""

from __future__ import annotations

from datetime import date

import asyncpg

_CARD_COLUMNS = """
c.card_id, c.pan, c.account_id, c.expires_on, c.status, c.pin_hash, c.pin_failures,
a.status AS account_status, a.balance, a.ssn
"""


async def insert_person(conn: asyncpg.Connection, ssn: str, name: str) -> bool:
    """False when the person already exists (same SSN)."""
    result = await conn.execute(
        "INSERT INTO people (ssn, name) VALUES ($1, $2) ON CONFLICT (ssn) DO NOTHING", ssn, name
    )
    return result == "INSERT 0 1"


async def ensure_account(conn: asyncpg.Connection, ssn: str) -> asyncpg.Record:
    # One account per person is account_holders' primary key (schema/009), which its
    # trigger fills: a second account for the ID number fails there. Registration inserts
    # the person first in the same transaction, which serializes two of the same number.
    row = await conn.fetchrow(
        """
        INSERT INTO individual_accounts (ssn)
        SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM account_holders WHERE ssn = $1)
        RETURNING account_id, ssn, balance, status
        """,
        ssn,
    )
    if row is None:
        row = await get_account_by_ssn(conn, ssn)
    return row


async def get_account_by_ssn(conn: asyncpg.Connection, ssn: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT account_id, ssn, balance, status FROM individual_accounts WHERE ssn = $1", ssn
    )


async def get_person(conn: asyncpg.Connection, ssn: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT ssn, name FROM people WHERE ssn = $1", ssn)


async def credit(
    conn: asyncpg.Connection, account_id: int, amount: int, kind: str, reference: str
) -> int:
    """Credit an account and journal it in one statement; return the new balance."""
    return await conn.fetchval(
        """
        WITH credited AS (
            UPDATE individual_accounts SET balance = balance + $2
            WHERE account_id = $1
            RETURNING account_id, balance
        )
        INSERT INTO journal (account_id, kind, amount, balance_after, reference)
        SELECT account_id, $3, $2, balance, $4 FROM credited
        RETURNING balance_after
        """,
        account_id,
        amount,
        kind,
        reference,
    )


async def set_account_status(conn: asyncpg.Connection, account_id: int, status: str) -> bool:
    result = await conn.execute(
        "UPDATE individual_accounts SET status = $2 WHERE account_id = $1", account_id, status
    )
    return result != "UPDATE 0"


async def insert_card(
    conn: asyncpg.Connection, pan: str, account_id: int, expires_on: date, pin_hash: str
) -> asyncpg.Record:
    return await conn.fetchrow(
        """
        INSERT INTO cards (pan, account_id, expires_on, pin_hash) VALUES ($1, $2, $3, $4)
        RETURNING card_id, pan, account_id, expires_on, status
        """,
        pan,
        account_id,
        expires_on,
        pin_hash,
    )


async def get_card(conn: asyncpg.Connection | asyncpg.Pool, pan: str) -> asyncpg.Record | None:
    """The card, its account's standing and balance (one indexed join)."""
    return await conn.fetchrow(
        f"""
        SELECT {_CARD_COLUMNS}
        FROM cards c JOIN individual_accounts a USING (account_id)
        WHERE c.pan = $1
        """,
        pan,
    )


async def cards_of_account(conn: asyncpg.Connection, account_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""
        SELECT {_CARD_COLUMNS}
        FROM cards c JOIN individual_accounts a USING (account_id)
        WHERE c.account_id = $1 ORDER BY c.card_id
        """,
        account_id,
    )


async def set_card_status(conn: asyncpg.Connection, pan: str, status: str) -> bool:
    result = await conn.execute("UPDATE cards SET status = $2 WHERE pan = $1", pan, status)
    return result != "UPDATE 0"


async def reset_pin(conn: asyncpg.Connection, pan: str, pin_hash: str) -> bool:
    """New PIN hash and a cleared failure counter (the counter reset)."""
    result = await conn.execute(
        "UPDATE cards SET pin_hash = $2, pin_failures = 0 WHERE pan = $1", pan, pin_hash
    )
    return result != "UPDATE 0"


async def pan_exists(conn: asyncpg.Connection, pan: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM cards WHERE pan = $1", pan))


async def record_contribution(
    conn: asyncpg.Connection, ssn: str, month: date, employer_part: int, individual_part: int
) -> bool:
    """False when that month was already recorded for the person."""
    result = await conn.execute(
        """
        INSERT INTO contributions (ssn, month, employer_part, individual_part)
        VALUES ($1, $2, $3, $4) ON CONFLICT (ssn, month) DO NOTHING
        """,
        ssn,
        month,
        employer_part,
        individual_part,
    )
    return result == "INSERT 0 1"


async def person_name(conn: asyncpg.Connection, ssn: str) -> str | None:
    return await conn.fetchval("SELECT name FROM people WHERE ssn = $1", ssn)


async def contribution_for_update(
    conn: asyncpg.Connection, ssn: str, month: date
) -> asyncpg.Record | None:
    """The recorded parts of a month, locked for a correction, and whether it was
    allocated already."""
    return await conn.fetchrow(
        """
        SELECT employer_part, individual_part,
               EXISTS (SELECT 1 FROM allocations a WHERE a.ssn = c.ssn AND a.month = c.month)
                   AS allocated
        FROM contributions c WHERE ssn = $1 AND month = $2
        FOR UPDATE
        """,
        ssn,
        month,
    )


async def correct_contribution(
    conn: asyncpg.Connection, ssn: str, month: date, employer_part: int, individual_part: int
) -> None:
    await conn.execute(
        """
        UPDATE contributions SET employer_part = $3, individual_part = $4
        WHERE ssn = $1 AND month = $2
        """,
        ssn,
        month,
        employer_part,
        individual_part,
    )


# Counter and self-service card operations ------------------------------------------------


async def lock_card(conn: asyncpg.Connection, pan: str) -> asyncpg.Record | None:
    """The card (with its holder's ssn), locked for a status change in this transaction."""
    return await conn.fetchrow(
        f"""
        SELECT {_CARD_COLUMNS}
        FROM cards c JOIN individual_accounts a USING (account_id)
        WHERE c.pan = $1
        FOR NO KEY UPDATE OF c
        """,
        pan,
    )


async def mark_lost(conn: asyncpg.Connection, card_id: int) -> bool:
    """Active -> lost; False when the card was not active."""
    result = await conn.execute(
        "UPDATE cards SET status = 'lost' WHERE card_id = $1 AND status = 'active'", card_id
    )
    return result != "UPDATE 0"


async def insert_replacement_card(
    conn: asyncpg.Connection,
    old_card_id: int,
    pan: str,
    account_id: int,
    expires_on: date,
    pin_hash: str,
) -> asyncpg.Record:
    """The new card on the same account; the old one becomes 'replaced' (answered 41)."""
    row = await conn.fetchrow(
        """
        INSERT INTO cards (pan, account_id, expires_on, pin_hash, replaces_card_id)
        VALUES ($1, $2, $3, $4, $5)
        RETURNING card_id, pan, account_id, expires_on, status
        """,
        pan,
        account_id,
        expires_on,
        pin_hash,
        old_card_id,
    )
    await conn.execute("UPDATE cards SET status = 'replaced' WHERE card_id = $1", old_card_id)
    return row


async def login_card(conn: asyncpg.Connection, ssn: str) -> str | None:
    """The card whose number the first password is derived from: the active card issued
    last (after a replacement, the new one)."""
    return await conn.fetchval(
        """
        SELECT c.pan FROM cards c JOIN individual_accounts a USING (account_id)
        WHERE a.ssn = $1 AND c.status = 'active'
        ORDER BY c.card_id DESC LIMIT 1
        """,
        ssn,
    )


async def reserve_pin_attempt(
    conn: asyncpg.Connection, card_id: int, max_failures: int
) -> asyncpg.Record | None:
    """Count a self-service PIN check as failed before the PIN is verified (a success
    clears it in change_pin), so parallel guesses cannot exceed the terminal's limit.
    None when the card is not active or already PIN-locked."""
    return await conn.fetchrow(
        """
        UPDATE cards SET pin_failures = pin_failures + 1
        WHERE card_id = $1 AND status = 'active' AND pin_failures < $2
        RETURNING pin_hash, pin_failures
        """,
        card_id,
        max_failures,
    )


async def change_pin(conn: asyncpg.Connection, card_id: int, pin_hash: str) -> bool:
    """New PIN hash and a cleared failure count, on a card that is still active."""
    result = await conn.execute(
        """
        UPDATE cards SET pin_hash = $2, pin_failures = 0
        WHERE card_id = $1 AND status = 'active'
        """,
        card_id,
        pin_hash,
    )
    return result != "UPDATE 0"


async def cards_of_person(
    conn: asyncpg.Connection | asyncpg.Pool, ssn: str
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""
        SELECT {_CARD_COLUMNS}, c.replaces_card_id
        FROM cards c JOIN individual_accounts a USING (account_id)
        WHERE a.ssn = $1 ORDER BY c.card_id
        """,
        ssn,
    )


async def person_with_account(
    conn: asyncpg.Connection | asyncpg.Pool, ssn: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT p.ssn, p.name, p.created_at, a.account_id, a.balance, a.status AS account_status
        FROM people p JOIN individual_accounts a USING (ssn)
        WHERE p.ssn = $1
        """,
        ssn,
    )


async def lock_account(conn: asyncpg.Connection, account_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT account_id, ssn, status FROM individual_accounts
        WHERE account_id = $1 FOR NO KEY UPDATE
        """,
        account_id,
    )


async def get_card_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, card_id: int, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = "FOR NO KEY UPDATE OF c" if for_update else ""
    return await conn.fetchrow(
        f"""
        SELECT {_CARD_COLUMNS}
        FROM cards c JOIN individual_accounts a USING (account_id)
        WHERE c.card_id = $1
        {lock}
        """,
        card_id,
    )
