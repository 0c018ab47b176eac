"""Terminal transactions: the idempotency record, the debit and the journal line.

Each write here is ONE statement, hence one transaction and one commit: the record of
the request, the balance change and the journal line either all exist or none does.
A retransmission racing its original hits the primary key (terminal, local date,
STAN); the loser's statement rolls back whole and the stored answer is read instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

import asyncpg

from pos_gateway.domain.decisions import MAX_PIN_FAILURES

_RETURNING = """
RETURNING terminal_id, local_date, stan, request_hash, txn_type, transaction_id, rrn,
          amount, balance, response_code, auth_code
"""


# txn_type of the row a reversal leaves in its original's place when it arrives first.
BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class RequestKey:
    terminal_id: str
    local_date: date
    stan: str


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    txn_type: str
    request_hash: bytes
    transaction_id: UUID
    rrn: str
    stan: str
    amount: int | None
    balance: int | None
    response_code: str
    auth_code: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record, prefix: str = "") -> StoredAnswer:
        """From a transactions row, or from columns aliased with `prefix` in a join."""
        return cls(
            txn_type=row[f"{prefix}txn_type"],
            request_hash=bytes(row[f"{prefix}request_hash"]),
            transaction_id=row[f"{prefix}transaction_id"],
            rrn=row[f"{prefix}rrn"],
            stan=row[f"{prefix}stan"],
            amount=row[f"{prefix}amount"],
            balance=row[f"{prefix}balance"],
            response_code=row[f"{prefix}response_code"],
            auth_code=row[f"{prefix}auth_code"],
        )


class DuplicateKey(Exception):
    """Another request with the same (terminal, local date, STAN) was stored first."""


async def find(pool: asyncpg.Pool, key: RequestKey) -> StoredAnswer | None:
    row = await pool.fetchrow(
        """
        SELECT txn_type, request_hash, transaction_id, rrn, stan, amount, balance,
               response_code, auth_code
        FROM transactions WHERE terminal_id = $1 AND local_date = $2 AND stan = $3
        """,
        key.terminal_id,
        key.local_date,
        key.stan,
    )
    return StoredAnswer.from_row(row) if row else None


async def _write(pool: asyncpg.Pool, sql: str, *args: object) -> StoredAnswer:
    try:
        row = await pool.fetchrow(sql, *args)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "transactions_pkey":
            raise DuplicateKey from exc
        raise
    if row is None:  # the card vanished between read and write: cards are never deleted
        raise LookupError("card not found while recording the transaction")
    return StoredAnswer.from_row(row)


async def record_decline(
    pool: asyncpg.Pool,
    key: RequestKey,
    request_hash: bytes,
    txn_type: str,
    merchant_id: str,
    card_id: int | None,
    account_id: int | None,
    amount: int | None,
    response_code: str,
) -> StoredAnswer:
    """A decline decided before any money moved (03, 13, 14, 41, 54, 57, 62, 75)."""
    return await _write(
        pool,
        f"""
        INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                                  merchant_id, card_id, account_id, amount, response_code)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        {_RETURNING}
        """,
        key.terminal_id,
        key.local_date,
        key.stan,
        request_hash,
        txn_type,
        merchant_id,
        card_id,
        account_id,
        amount,
        response_code,
    )


async def record_wrong_pin(
    pool: asyncpg.Pool,
    key: RequestKey,
    request_hash: bytes,
    txn_type: str,
    merchant_id: str,
    card_id: int,
    amount: int | None,
    max_failures: int,
) -> StoredAnswer:
    """Count the failure atomically; the try that reaches the limit answers 75, not 55."""
    return await _write(
        pool,
        f"""
        WITH failed AS (
            UPDATE cards SET pin_failures = LEAST(pin_failures + 1, $9)
            WHERE card_id = $7
            RETURNING account_id, pin_failures
        )
        INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                                  merchant_id, card_id, account_id, amount, response_code)
        SELECT $1, $2, $3, $4, $5, $6, $7, account_id, $8,
               CASE WHEN pin_failures >= $9 THEN '75' ELSE '55' END
        FROM failed
        {_RETURNING}
        """,
        key.terminal_id,
        key.local_date,
        key.stan,
        request_hash,
        txn_type,
        merchant_id,
        card_id,
        amount,
        max_failures,
    )


# After a correct PIN. The card's standing is read again inside the statement, so a card
# locked, lost or frozen since it was first read is still refused; the debit itself is
# the conditional UPDATE, which cannot take the balance below zero under any concurrency.
_AFTER_GOOD_PIN = """
WITH card AS (
    SELECT c.card_id, c.account_id, c.status, c.pin_failures, a.status AS account_status,
           a.balance
    FROM cards c JOIN individual_accounts a USING (account_id)
    WHERE c.card_id = $7
), account_lock AS (
    -- The account before the card, the order group commit takes them in: no deadlock.
    SELECT account_id FROM individual_accounts
    WHERE account_id = (SELECT account_id FROM card)
    FOR NO KEY UPDATE
), pin_reset AS (
    UPDATE cards SET pin_failures = 0
    WHERE card_id = $7 AND pin_failures BETWEEN 1 AND $10 - 1
      AND EXISTS (SELECT 1 FROM account_lock)
), debit AS (
    UPDATE individual_accounts SET balance = balance - $8
    WHERE $5 = 'purchase' AND account_id = (SELECT account_id FROM card)
      AND balance >= $8 AND status = 'active'
      AND EXISTS (SELECT 1 FROM card WHERE status = 'active' AND pin_failures < $10)
    RETURNING account_id, balance
), decision AS (
    SELECT card.account_id,
           CASE WHEN card.status <> 'active' THEN '41'
                WHEN card.pin_failures >= $10 THEN '75'
                WHEN card.account_status <> 'active' THEN '62'
                WHEN $5 = 'balance_inquiry' THEN '00'
                WHEN EXISTS (SELECT 1 FROM debit) THEN '00'
                ELSE '51' END AS code,
           CASE WHEN $5 = 'balance_inquiry' THEN card.balance
                ELSE (SELECT balance FROM debit) END AS balance
    FROM card
), txn AS (
    INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                              merchant_id, card_id, account_id, amount, response_code,
                              balance, auth_code)
    SELECT $1, $2, $3, $4, $5, $6, $7, account_id,
           CASE WHEN $5 = 'purchase' THEN $8 END, code,
           CASE WHEN code = '00' THEN balance END,
           CASE WHEN code = '00' THEN $9 END
    FROM decision
    RETURNING *
), journal_line AS (
    INSERT INTO journal (account_id, kind, amount, balance_after, transaction_id,
                         terminal_id, merchant_id)
    SELECT debit.account_id, 'purchase', -$8::bigint, debit.balance, txn.transaction_id,
           txn.terminal_id, txn.merchant_id
    FROM debit, txn
)
SELECT terminal_id, local_date, stan, request_hash, txn_type, transaction_id, rrn,
       amount, balance, response_code, auth_code
FROM txn
"""


async def record_after_good_pin(
    pool: asyncpg.Pool,
    key: RequestKey,
    request_hash: bytes,
    txn_type: str,
    merchant_id: str,
    card_id: int,
    amount: int | None,
    auth_code: str,
    max_failures: int,
) -> StoredAnswer:
    """Purchase (debit + journal) or balance inquiry, with the PIN counter reset."""
    return await _write(
        pool,
        _AFTER_GOOD_PIN,
        key.terminal_id,
        key.local_date,
        key.stan,
        request_hash,
        txn_type,
        merchant_id,
        card_id,
        amount if amount is not None else 0,
        auth_code,
        max_failures,
    )


_REFUND = f"""
WITH original AS (
    SELECT transaction_id, txn_type, response_code, merchant_id, card_id, account_id
    FROM transactions WHERE rrn = $7
), claimed AS (
    UPDATE transactions SET refunded_amount = refunded_amount + $8
    WHERE rrn = $7 AND txn_type = 'purchase' AND response_code = '00' AND merchant_id = $6
      AND NOT reversed AND refunded_amount + $8 <= amount
      AND ($10::text IS NULL OR card_id = (SELECT card_id FROM cards WHERE pan = $10))
    RETURNING account_id
), credit AS (
    UPDATE individual_accounts SET balance = balance + $8
    WHERE account_id = (SELECT account_id FROM claimed)
    RETURNING account_id, balance
), decision AS (
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM credit) THEN '00'
        WHEN EXISTS (
            SELECT 1 FROM original o JOIN transactions t USING (transaction_id)
            WHERE o.txn_type = 'purchase' AND o.response_code = '00' AND o.merchant_id = $6
              AND NOT t.reversed
              AND ($10::text IS NULL OR o.card_id = (SELECT card_id FROM cards WHERE pan = $10))
        ) THEN '13'
        ELSE '12' END AS code
), txn AS (
    INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                              merchant_id, card_id, account_id, amount, response_code,
                              balance, auth_code, original_transaction_id)
    SELECT $1, $2, $3, $4, $5, $6,
           (SELECT card_id FROM original), (SELECT account_id FROM original), $8, code,
           CASE WHEN code = '00' THEN (SELECT balance FROM credit) END,
           CASE WHEN code = '00' THEN $9 END,
           (SELECT transaction_id FROM original)
    FROM decision
    RETURNING *
), journal_line AS (
    INSERT INTO journal (account_id, kind, amount, balance_after, transaction_id,
                         terminal_id, merchant_id, reference)
    SELECT credit.account_id, 'refund', $8::bigint, credit.balance, txn.transaction_id,
           txn.terminal_id, txn.merchant_id, 'refund of RRN ' || $7
    FROM credit, txn
)
SELECT {_RETURNING.replace("RETURNING", "")} FROM txn
"""


async def record_refund(
    pool: asyncpg.Pool,
    key: RequestKey,
    request_hash: bytes,
    txn_type: str,
    merchant_id: str,
    original_rrn: str,
    amount: int,
    auth_code: str,
    pan: str | None,
) -> StoredAnswer:
    """Credit back part or all of an approved purchase of this merchant.

    The claim on the original is a conditional UPDATE of its row (refunded so far + this
    refund <= its amount, not reversed), so concurrent refunds and a reversal of the same
    purchase serialize on that row and can never return more than was paid."""
    return await _write(
        pool, _REFUND, *_key_args(key), request_hash, txn_type, merchant_id,
        original_rrn, amount, auth_code, pan,
    )  # fmt: skip


_BLOCK_ORIGINAL = """
INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                          merchant_id, response_code)
VALUES ($1, $2, $3, '\\x'::bytea, 'blocked', $4, '12')
ON CONFLICT (terminal_id, local_date, stan) DO NOTHING
RETURNING transaction_id
"""

_FIND_ORIGINAL = """
SELECT local_date FROM transactions
WHERE terminal_id = $1 AND stan = $2 AND local_date = ANY($3::date[]) AND txn_type <> 'blocked'
ORDER BY local_date DESC
LIMIT 1
"""

# $9: the original's local date. A purchase is reversed only while it is in the terminal's
# open batch: once the batch is closed and reconciled the money is settled, and the
# reversal is declined (12) rather than acknowledged without effect. A refund is final:
# its reversal is declined too. Anything else (declined, unknown, already reversed) is
# acknowledged with nothing to do.
_REVERSAL = f"""
WITH target AS (
    SELECT transaction_id, txn_type, response_code, batch_no FROM transactions
    WHERE terminal_id = $1 AND local_date = $9 AND stan = $7
), open_batch AS (
    SELECT current_batch FROM terminals WHERE terminal_id = $1
), original AS (
    UPDATE transactions SET reversed = true
    WHERE terminal_id = $1 AND local_date = $9 AND stan = $7
      AND txn_type = 'purchase' AND response_code = '00' AND NOT reversed
      AND batch_no = (SELECT current_batch FROM open_batch)
    RETURNING transaction_id, account_id, card_id, amount - refunded_amount AS unreturned
), credit AS (
    UPDATE individual_accounts a SET balance = a.balance + o.unreturned
    FROM original o
    WHERE a.account_id = o.account_id AND o.unreturned > 0
    RETURNING a.account_id, a.balance, o.unreturned
), decision AS (
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM original) THEN '00'
        WHEN EXISTS (SELECT 1 FROM target WHERE response_code = '00' AND txn_type = 'refund')
            THEN '12'
        WHEN EXISTS (SELECT 1 FROM target
                     WHERE response_code = '00' AND txn_type = 'purchase'
                       AND batch_no <> (SELECT current_batch FROM open_batch))
            THEN '12'
        ELSE '00' END AS code
), txn AS (
    INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                              merchant_id, card_id, account_id, amount, response_code,
                              balance, auth_code, original_transaction_id)
    SELECT $1, $2, $3, $4, $5, $6,
           (SELECT card_id FROM original), (SELECT account_id FROM original),
           coalesce((SELECT unreturned FROM original), 0), code,
           (SELECT balance FROM credit), CASE WHEN code = '00' THEN $8 END,
           coalesce((SELECT transaction_id FROM original), (SELECT transaction_id FROM target))
    FROM decision
    RETURNING *
), journal_line AS (
    INSERT INTO journal (account_id, kind, amount, balance_after, transaction_id,
                         terminal_id, merchant_id, reference)
    SELECT credit.account_id, 'reversal', credit.unreturned, credit.balance,
           txn.transaction_id, txn.terminal_id, txn.merchant_id, 'reversal of STAN ' || $7
    FROM credit, txn
)
SELECT {_RETURNING.replace("RETURNING", "")} FROM txn
"""


async def record_reversal(
    pool: asyncpg.Pool,
    key: RequestKey,
    request_hash: bytes,
    txn_type: str,
    merchant_id: str,
    original_stan: str,
    auth_code: str,
    original_dates: list[date],
) -> StoredAnswer:
    """Cancel this terminal's request `original_stan` of one of `original_dates` (the
    original's local date when the terminal sent it, else the reversal's date and the day
    before, for a reversal that crosses midnight).

    One transaction. If the original is there, it is reversed (see _REVERSAL). If not,
    its key is reserved with a 'blocked' row on each candidate date, so an original that
    arrives later finds its key taken and is declined without touching money. A
    reservation that conflicts means the original arrived meanwhile: the insert waited for
    its commit, so it is found and reversed."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                _FIND_ORIGINAL, key.terminal_id, original_stan, original_dates
            )
            if found is None:
                for day in original_dates:
                    await conn.fetchval(
                        _BLOCK_ORIGINAL, key.terminal_id, day, original_stan, merchant_id
                    )
                found = await conn.fetchval(
                    _FIND_ORIGINAL, key.terminal_id, original_stan, original_dates
                )
            # An itemised purchase's person is locked before its account (§10 lock order).
            from pos_gateway.store import settlement

            original_date = found or original_dates[0]
            await settlement.lock_person_for_reversal(conn, key.terminal_id, original_stan,
                                                      original_date)  # fmt: skip
            row = await conn.fetchrow(
                _REVERSAL, *_key_args(key), request_hash, txn_type, merchant_id,
                original_stan, auth_code, original_date,
            )  # fmt: skip
            await settlement.undo_after_reversal(conn, row["transaction_id"])
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "transactions_pkey":
            raise DuplicateKey from exc
        raise
    return StoredAnswer.from_row(row)


def _key_args(key: RequestKey) -> tuple[str, date, str]:
    return key.terminal_id, key.local_date, key.stan


@dataclass(frozen=True, slots=True)
class GoodPinRequest:
    """A purchase or balance inquiry whose PIN was verified, waiting for the group commit."""

    key: RequestKey
    request_hash: bytes
    txn_type: str
    merchant_id: str
    card_id: int
    amount: int | None
    auth_code: str


_LOCK_AND_READ = """
SELECT c.card_id, c.account_id, c.status, c.pin_failures, a.status AS account_status,
       a.balance
FROM cards c JOIN individual_accounts a USING (account_id)
WHERE c.card_id = ANY($1::bigint[])
ORDER BY a.account_id, c.card_id
FOR NO KEY UPDATE OF a
"""

_WRITE_BATCH = f"""
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::bytea[], $5::text[],
                         $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::text[],
                         $11::bigint[], $12::text[], $13::int[])
        AS t(terminal_id, local_date, stan, request_hash, txn_type, merchant_id, card_id,
             account_id, amount, response_code, balance, auth_code, ord)
), txn AS (
    INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                              merchant_id, card_id, account_id, amount, response_code,
                              balance, auth_code)
    SELECT terminal_id, local_date, stan, request_hash, txn_type, merchant_id, card_id,
           account_id, amount, response_code, balance, auth_code
    FROM input ORDER BY ord
    {_RETURNING}, merchant_id, account_id
), balances AS (
    -- One row per account: its balance after the last approved debit of the batch.
    UPDATE individual_accounts a SET balance = last.balance
    FROM (SELECT DISTINCT ON (account_id) account_id, balance
          FROM input
          WHERE txn_type = 'purchase' AND response_code = '00'
          ORDER BY account_id, ord DESC) AS last
    WHERE a.account_id = last.account_id
), pin_reset AS (
    UPDATE cards SET pin_failures = 0
    WHERE card_id = ANY($14::bigint[]) AND pin_failures > 0
), journal_lines AS (
    INSERT INTO journal (account_id, kind, amount, balance_after, transaction_id,
                         terminal_id, merchant_id)
    SELECT txn.account_id, 'purchase', -txn.amount, txn.balance, txn.transaction_id,
           txn.terminal_id, txn.merchant_id
    FROM txn JOIN input USING (terminal_id, local_date, stan)
    WHERE txn.txn_type = 'purchase' AND txn.response_code = '00'
    ORDER BY input.ord
)
SELECT * FROM txn
"""


async def record_good_pin_batch(
    conn: asyncpg.Connection, requests: list[GoodPinRequest], decide
) -> list[StoredAnswer]:
    """Decide and record many good-PIN requests in one transaction and one commit.

    The accounts are locked in account order (two batches can never deadlock), then each
    request is decided in arrival order against the running balance, so several purchases
    on one card in one batch are judged exactly as if they had come one by one. Each
    account row is written once, with its final balance; every approved purchase gets its
    journal line with its own balance after. Raises DuplicateKey if any request's key was
    taken meanwhile: the caller then falls back to one statement per request."""
    async with conn.transaction():
        rows = await conn.fetch(_LOCK_AND_READ, list({r.card_id for r in requests}))
        cards = {row["card_id"]: row for row in rows}
        balances = {row["account_id"]: row["balance"] for row in rows}
        columns: list[list] = [[] for _ in range(13)]
        resets: list[int] = []
        for ord_, request in enumerate(requests):
            card = cards[request.card_id]
            outcome = decide(request, card, balances[card["account_id"]])
            balances[card["account_id"]] = outcome.balance
            approved = outcome.code == "00"
            # The PIN was right, whatever the decision: the failure count starts over
            # (unless the card got locked meanwhile).
            if 0 < card["pin_failures"] < MAX_PIN_FAILURES:
                resets.append(request.card_id)
            values = (
                request.key.terminal_id, request.key.local_date, request.key.stan,
                request.request_hash, request.txn_type, request.merchant_id, request.card_id,
                card["account_id"],
                request.amount if request.txn_type == "purchase" else None,
                outcome.code.value, outcome.balance if approved else None,
                request.auth_code if approved else None, ord_,
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        try:
            written = await conn.fetch(_WRITE_BATCH, *columns, resets)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "transactions_pkey":
                raise DuplicateKey from exc
            raise
    by_key = {(r["terminal_id"], r["local_date"], r["stan"]): r for r in written}
    return [
        StoredAnswer.from_row(by_key[(r.key.terminal_id, r.key.local_date, r.key.stan)])
        for r in requests
    ]


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Everything a terminal request needs to read, fetched in one round trip."""

    terminal: asyncpg.Record  # terminal, wrapped keys and merchant standing
    stored: StoredAnswer | None  # the answer already given to this (terminal, date, STAN)
    card: dict[str, object] | None  # the card and its account, shaped as people.get_card


_CONTEXT = """
SELECT t.terminal_id, t.merchant_id, t.status, t.mac_key_wrapped, t.pin_key_wrapped,
       m.designated_from, m.designated_until, m.suspended,
       x.txn_type AS x_txn_type, x.request_hash AS x_request_hash,
       x.transaction_id AS x_transaction_id, x.rrn AS x_rrn, x.stan AS x_stan,
       x.amount AS x_amount, x.balance AS x_balance, x.response_code AS x_response_code,
       x.auth_code AS x_auth_code,
       c.card_id, c.pan, c.account_id, c.expires_on, c.status AS card_status, c.pin_hash,
       c.pin_failures, a.status AS account_status, a.balance AS account_balance, a.ssn
FROM terminals t
JOIN merchants m USING (merchant_id)
LEFT JOIN transactions x ON x.terminal_id = t.terminal_id AND x.local_date = $2 AND x.stan = $3
LEFT JOIN cards c ON c.pan = $4
LEFT JOIN individual_accounts a ON a.account_id = c.account_id
WHERE t.terminal_id = $1
"""


async def load_context(
    pool: asyncpg.Pool,
    terminal_id: str,
    key: RequestKey | None,
    pan: str | None,
) -> RequestContext | None:
    """Terminal, stored answer and card in one query (None: no such terminal). Only reads:
    it may run before the signature is checked, and nothing is decided on it until then."""
    row = await pool.fetchrow(
        _CONTEXT,
        terminal_id,
        key.local_date if key else None,
        key.stan if key else None,
        pan,
    )
    if row is None:
        return None
    stored = StoredAnswer.from_row(row, "x_") if row["x_transaction_id"] is not None else None
    card = None
    if row["card_id"] is not None:
        card = {
            "card_id": row["card_id"],
            "pan": row["pan"],
            "account_id": row["account_id"],
            "expires_on": row["expires_on"],
            "status": row["card_status"],
            "pin_hash": row["pin_hash"],
            "pin_failures": row["pin_failures"],
            "account_status": row["account_status"],
            "balance": row["account_balance"],
            "ssn": row["ssn"],
        }
    return RequestContext(terminal=row, stored=stored, card=card)
