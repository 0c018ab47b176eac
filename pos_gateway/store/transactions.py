"""Terminal transactions: the idempotency record, the debit and the journal line.

Each write here is one transaction (one statement where nothing needs deciding between
a read and a write): the record of the request, the balance change and the journal line
either all exist or none does. A retransmission racing its original hits the primary
key (terminal, local date, STAN); the loser rolls back whole and the stored answer is
read instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

_RETURNING = """
RETURNING terminal_id, local_date, stan, request_hash, txn_type, transaction_id, rrn,
          amount, balance, response_code, auth_code
"""


# txn_type of the row a reversal leaves in its original's place when it arrives first.
BLOCKED = "blocked"
# request_hash of a row whose request identity is not known (blocked rows, and rows
# schema/004_request_identity.sql could not recompute).
UNKNOWN_IDENTITY = b""


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


async def _write(pool: asyncpg.Pool | asyncpg.Connection, sql: str, *args: object) -> StoredAnswer:
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
    """A decline decided before any money moved (03, 13, 14, 41, 54, 55, 57, 62, 75)."""
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


# A PIN try is counted before its hash is checked, so that a burst of guesses spread over
# several gateway processes cannot outrun the count: the UPDATE takes the card's row lock,
# the one both good-PIN writes (record_good_pin, record_good_pin_batch) read the count
# under. The limit is enforced here as the conditional UPDATE; the answers are chosen in
# domain/decisions.py.
# Its commit does not wait for the disk (synchronous_commit off for this transaction
# only): an answer that tells the hash's outcome leaves only after a later synchronous
# commit (the decline, the debit), which flushes the WAL up to it, this try included; a
# crash before that loses a try whose outcome nobody was told. Waiting would cost a WAL
# flush per PIN request, the very commit group commit is there to share.
_CLAIM_PIN_TRY = """
WITH taken AS (
    SELECT 1 FROM transactions WHERE terminal_id = $2 AND local_date = $3 AND stan = $4
), claimed AS (
    UPDATE cards SET pin_failures = pin_failures + 1
    WHERE card_id = $1 AND pin_failures < $5 AND NOT EXISTS (SELECT 1 FROM taken)
    RETURNING pin_failures, status, account_id
)
SELECT EXISTS (SELECT 1 FROM taken) AS taken, claimed.pin_failures AS tries,
       claimed.status, a.status AS account_status, a.balance,
       set_config('synchronous_commit', 'off', true) AS commit_mode
FROM (SELECT 1) AS one
LEFT JOIN claimed ON true
LEFT JOIN individual_accounts a ON a.account_id = claimed.account_id
"""


@dataclass(frozen=True, slots=True)
class PinTry:
    """A PIN try counted, and the card and account as the claim found them: the count it
    took the card to, and what a good-PIN write is decided on first (GoodPinRequest.seen).
    Read right after the card's previous request in this process finished, so a request
    that waited for it needs no other read of the card."""

    tries: int
    status: str
    account_status: str
    balance: int

    def seen(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "pin_failures": self.tries,
            "account_status": self.account_status,
            "balance": self.balance,
        }


def _pin_try(row: Mapping[str, Any]) -> PinTry | None:
    if row["tries"] is None:
        return None
    return PinTry(row["tries"], row["status"], row["account_status"], row["balance"])


async def claim_pin_try(
    pool: asyncpg.Pool, card_id: int, key: RequestKey, max_failures: int
) -> PinTry | None:
    """Count one PIN try on the card; return the count it took the card to (with the card
    and account as they are), or None when the card already has `max_failures`. Raises
    DuplicateKey when the request's key is taken (a retransmission: nothing is counted,
    the stored answer is the answer)."""
    row = await pool.fetchrow(_CLAIM_PIN_TRY, card_id, *_key_args(key), max_failures)
    if row["taken"]:
        raise DuplicateKey
    return _pin_try(row)


# Many claims in one statement and one (asynchronous) commit, for the claims waiting at
# once (services/group_commit.py, PinTryClaims): as _CLAIM_PIN_TRY, request by request,
# for distinct cards. The rows are locked in the order the good-PIN batch locks them
# (account, then card), so a claim batch and a write batch can never deadlock. Every
# lookup is by primary key (LATERAL ... OFFSET 0, = ANY) whatever the planner guesses.
_CLAIM_PIN_TRIES = """
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::bpchar[], $3::date[], $4::bpchar[])
        WITH ORDINALITY AS t(card_id, terminal_id, local_date, stan, ord)
), taken AS (
    SELECT i.ord FROM input i
    CROSS JOIN LATERAL (
        SELECT 1 FROM transactions x
        WHERE x.terminal_id = i.terminal_id AND x.local_date = i.local_date AND x.stan = i.stan
        OFFSET 0
    ) AS x
), locked AS MATERIALIZED (
    SELECT c.card_id FROM cards c
    WHERE c.card_id = ANY (ARRAY(SELECT card_id FROM input
                                 WHERE ord NOT IN (SELECT ord FROM taken)))
    ORDER BY c.account_id, c.card_id
    FOR NO KEY UPDATE
), claimed AS (
    UPDATE cards c SET pin_failures = c.pin_failures + 1
    WHERE c.card_id = ANY (ARRAY(SELECT card_id FROM locked)) AND c.pin_failures < $5
    RETURNING c.card_id, c.pin_failures, c.status, c.account_id
)
SELECT i.ord, t.ord IS NOT NULL AS taken, claimed.pin_failures AS tries, claimed.status,
       a.status AS account_status, a.balance,
       set_config('synchronous_commit', 'off', true) AS commit_mode
FROM input i
LEFT JOIN taken t ON t.ord = i.ord
LEFT JOIN claimed ON claimed.card_id = i.card_id AND t.ord IS NULL
LEFT JOIN individual_accounts a ON a.account_id = claimed.account_id
ORDER BY i.ord
"""


async def claim_pin_tries(
    pool: asyncpg.Pool, claims: list[tuple[int, RequestKey]], max_failures: int
) -> list[PinTry | DuplicateKey | None]:
    """claim_pin_try for many (card_id, key) pairs of distinct cards in one round trip:
    for each, the try counted (PinTry), None (no try left), or DuplicateKey (its key is
    taken: nothing counted)."""
    if len({card_id for card_id, _ in claims}) != len(claims):
        raise ValueError("one claim per card in a batch")
    rows = await pool.fetch(
        _CLAIM_PIN_TRIES,
        [card_id for card_id, _ in claims],
        [key.terminal_id for _, key in claims],
        [key.local_date for _, key in claims],
        [key.stan for _, key in claims],
        max_failures,
    )
    return [DuplicateKey() if row["taken"] else _pin_try(row) for row in rows]


async def release_pin_try(pool: asyncpg.Pool, card_id: int) -> None:
    """Give back a try that turned out to be a copy's (its key was taken while it was
    being checked): the original's try is the one that counts."""
    await pool.execute(
        "UPDATE cards SET pin_failures = pin_failures - 1 WHERE card_id = $1 AND pin_failures > 0",
        card_id,
    )


def nothing_written(exc: BaseException) -> bool:
    """Whether a write that raised `exc` certainly did not commit: the server refused a
    statement or the COMMIT over a live connection, so it rolled back. A lost connection
    or a killed backend (08, 57P01-57P03) may have come after the COMMIT went through."""
    if not isinstance(exc, asyncpg.PostgresError):
        return False
    state = exc.sqlstate or ""
    return not state.startswith("08") and state not in ("57P01", "57P02", "57P03")


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
    async with pool.acquire() as conn, conn.transaction():
        # Locked first, so _REFUND's snapshot sees a reversal that committed while this
        # waited, and declines 12 (reversed) rather than 13 on the row as it was before.
        await conn.execute(
            "SELECT 1 FROM transactions WHERE rrn = $1 FOR NO KEY UPDATE", original_rrn
        )
        return await _write(
            conn, _REFUND, *_key_args(key), request_hash, txn_type, merchant_id,
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
-- Locked first, so _REVERSAL's snapshot sees a refund that committed while this waited
-- (and declines with 12 instead of acknowledging a reversal that did nothing).
FOR NO KEY UPDATE
"""

# $9: the original's local date. A purchase is reversed only while it is in the terminal's
# open batch: once the batch is closed and reconciled the money is settled, and the
# reversal is declined (12) rather than acknowledged without effect. A refund is final:
# its reversal is declined too, and so is the reversal of a purchase with any refund (12):
# the refund may sit in another terminal's batch, closed already, and a reversal would
# leave that batch carrying money the card never paid. Anything else (declined, unknown,
# already reversed) is acknowledged with nothing to do.
_REVERSAL = f"""
WITH target AS (
    SELECT transaction_id, txn_type, response_code, batch_no, reversed, refunded_amount,
           -- An itemised purchase refunded whole whose account paid nothing keeps
           -- refunded_amount at 0: its split, given back, tells of the refund.
           EXISTS (SELECT 1 FROM settlement_splits s
                   WHERE s.transaction_id = t.transaction_id AND s.undone_by IS NOT NULL)
               AS undone
    FROM transactions t
    WHERE terminal_id = $1 AND local_date = $9 AND stan = $7
), open_batch AS (
    SELECT current_batch FROM terminals WHERE terminal_id = $1
), original AS (
    UPDATE transactions SET reversed = true
    WHERE terminal_id = $1 AND local_date = $9 AND stan = $7
      AND txn_type = 'purchase' AND response_code = '00' AND NOT reversed
      AND refunded_amount = 0 AND batch_no = (SELECT current_batch FROM open_batch)
      AND NOT (SELECT undone FROM target)
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
                     WHERE response_code = '00' AND txn_type = 'purchase' AND NOT reversed
                       AND (refunded_amount > 0 OR undone))
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
            # The terminal first, as the insert's trigger takes it (002_lifecycle.sql): a
            # batch close in progress is waited for here, so the open batch read below is
            # the one after it, and a purchase the close counted is never reversed.
            await conn.execute(
                "SELECT 1 FROM terminals WHERE terminal_id = $1 FOR KEY SHARE", key.terminal_id
            )
            # An itemised purchase's person is locked before its row and its account (§10
            # lock order, the one an itemised refund takes too). Imported here: settlement
            # builds on this module.
            from pos_gateway.store import settlement

            await settlement.lock_person_for_reversal(
                conn, key.terminal_id, original_stan, original_dates
            )
            found = await conn.fetchval(
                _FIND_ORIGINAL, key.terminal_id, original_stan, original_dates
            )
            if found is None:
                for day in original_dates:
                    await conn.fetchval(
                        _BLOCK_ORIGINAL, key.terminal_id, day, original_stan, merchant_id
                    )
                # It may have arrived meanwhile: its person before its row, as above.
                await settlement.lock_person_for_reversal(
                    conn, key.terminal_id, original_stan, original_dates
                )
                found = await conn.fetchval(
                    _FIND_ORIGINAL, key.terminal_id, original_stan, original_dates
                )
            original_date = found or original_dates[0]
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
    pin_try: int  # the PIN-failure count this request's try took the card to (claim_pin_try)
    # The card and account as last read (status, pin_failures, account_status, balance):
    # what a request written alone is decided on first (record_good_pin).
    seen: Mapping[str, Any] | None = field(default=None, compare=False)


_LOCK_AND_READ = """
SELECT c.card_id, c.account_id, c.status, c.pin_failures, a.status AS account_status,
       a.balance
FROM cards c JOIN individual_accounts a USING (account_id)
WHERE c.card_id = ANY($1::bigint[])
ORDER BY a.account_id, c.card_id
FOR NO KEY UPDATE OF a, c
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
), pin_counts AS (
    UPDATE cards c SET pin_failures = p.pin_failures
    FROM unnest($14::bigint[], $15::int[]) AS p(card_id, pin_failures)
    WHERE c.card_id = p.card_id AND c.pin_failures <> p.pin_failures
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

    The accounts and cards are locked in account order (two batches can never deadlock;
    a PIN try counted meanwhile waits for the commit), then each request is decided by
    `decide(request, card, balance, pin_failures) -> AfterPin` in arrival order against
    the running balance and PIN-failure count, so several requests on one card in one
    batch are judged exactly as if they had come one by one. Each account and card row is
    written once, with its final value; every approved purchase gets its journal line with
    its own balance after. Raises DuplicateKey if any request's key was taken meanwhile:
    the caller then falls back to one request at a time."""
    async with conn.transaction():
        rows = await conn.fetch(_LOCK_AND_READ, list({r.card_id for r in requests}))
        cards = {row["card_id"]: row for row in rows}
        balances = {row["account_id"]: row["balance"] for row in rows}
        failures = {row["card_id"]: row["pin_failures"] for row in rows}
        columns: list[list] = [[] for _ in range(13)]
        for ord_, request in enumerate(requests):
            card = cards[request.card_id]
            account_id = card["account_id"]
            outcome = decide(request, card, balances[account_id], failures[request.card_id])
            balances[account_id] = outcome.balance
            failures[request.card_id] = outcome.pin_failures
            approved = outcome.code == "00"
            values = (
                request.key.terminal_id, request.key.local_date, request.key.stan,
                request.request_hash, request.txn_type, request.merchant_id, request.card_id,
                account_id,
                request.amount if request.txn_type == "purchase" else None,
                outcome.code.value, outcome.balance if approved else None,
                request.auth_code if approved else None, ord_,
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        try:
            written = await conn.fetch(
                _WRITE_BATCH, *columns, list(failures), list(failures.values())
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "transactions_pkey":
                raise DuplicateKey from exc
            raise
    by_key = {(r["terminal_id"], r["local_date"], r["stan"]): r for r in written}
    return [
        StoredAnswer.from_row(by_key[(r.key.terminal_id, r.key.local_date, r.key.stan)])
        for r in requests
    ]


# One good-PIN request alone, in one statement: the decision is taken in Python
# (domain/decisions.py) on the card and account as last read, and written here only if
# they are still exactly that under the rows' locks ($12-$15: card status, PIN-failure
# count, account status, balance). Otherwise nothing is written and the locked state
# comes back, to be decided on again. SQL guards the decision, it never makes one.
_GOOD_PIN_ALONE = f"""
WITH locked AS (
    SELECT c.card_id, c.account_id, c.status, c.pin_failures, a.status AS account_status,
           a.balance
    FROM cards c JOIN individual_accounts a USING (account_id)
    WHERE c.card_id = $7
    FOR NO KEY UPDATE OF a, c
), ok AS (
    SELECT * FROM locked
    WHERE status = $12 AND pin_failures = $13 AND account_status = $14 AND balance = $15
), debit AS (
    UPDATE individual_accounts a SET balance = $10
    FROM ok WHERE a.account_id = ok.account_id AND a.balance <> $10
), pin_count AS (
    UPDATE cards c SET pin_failures = $16
    FROM ok WHERE c.card_id = ok.card_id AND c.pin_failures <> $16
), txn AS (
    INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                              merchant_id, card_id, account_id, amount, response_code,
                              balance, auth_code)
    SELECT $1, $2, $3, $4, $5, $6, $7, ok.account_id, $8, $9,
           CASE WHEN $11::text IS NOT NULL THEN $10 END, $11
    FROM ok
    {_RETURNING}, merchant_id, account_id
), journal_line AS (
    INSERT INTO journal (account_id, kind, amount, balance_after, transaction_id,
                         terminal_id, merchant_id)
    SELECT txn.account_id, 'purchase', -txn.amount, txn.balance, txn.transaction_id,
           txn.terminal_id, txn.merchant_id
    FROM txn WHERE txn.txn_type = 'purchase' AND txn.response_code = '00'
)
SELECT locked.status AS locked_status, locked.pin_failures AS locked_pin_failures,
       locked.account_status AS locked_account_status, locked.balance AS locked_balance,
       txn.*
FROM locked LEFT JOIN txn ON true
"""

_SEEN_ATTEMPTS = 3


async def record_good_pin(pool: asyncpg.Pool, request: GoodPinRequest, decide) -> StoredAnswer:
    """One good-PIN request alone: decided by `decide` (as record_good_pin_batch does) on
    `request.seen`, written in one statement if the card and account are still as seen,
    else decided again on their locked state. Without `seen`, or when the state keeps
    changing, it is written as a batch of one."""
    seen = request.seen
    for _ in range(_SEEN_ATTEMPTS if seen is not None else 0):
        assert seen is not None
        outcome = decide(request, seen, seen["balance"], seen["pin_failures"])
        approved = outcome.code == "00"
        try:
            row = await pool.fetchrow(
                _GOOD_PIN_ALONE, *_key_args(request.key), request.request_hash,
                request.txn_type, request.merchant_id, request.card_id,
                request.amount if request.txn_type == "purchase" else None,
                outcome.code.value, outcome.balance,
                request.auth_code if approved else None,
                seen["status"], seen["pin_failures"], seen["account_status"], seen["balance"],
                outcome.pin_failures,
            )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "transactions_pkey":
                raise DuplicateKey from exc
            raise
        if row is None:  # the card vanished: cards are never deleted
            raise LookupError("card not found while recording the transaction")
        if row["transaction_id"] is not None:
            return StoredAnswer.from_row(row)
        seen = {
            "status": row["locked_status"],
            "pin_failures": row["locked_pin_failures"],
            "account_status": row["locked_account_status"],
            "balance": row["locked_balance"],
        }
    async with pool.acquire() as conn:
        (answer,) = await record_good_pin_batch(conn, [request], decide)
    return answer


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Everything a terminal request needs to read, fetched in one round trip."""

    terminal: asyncpg.Record  # terminal, wrapped keys and merchant standing
    stored: StoredAnswer | None  # the answer already given to this (terminal, date, STAN)
    card: dict[str, Any] | None  # the card and its account, shaped as people.get_card


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
    return _context(row) if row is not None else None


# The context of many requests in one round trip (services/group_commit.py, ContextReads):
# _CONTEXT for each (terminal, local date, STAN, PAN), numbered by `ord`; a request whose
# terminal does not exist has no row. OFFSET 0 keeps each one the lookup by primary and
# unique keys that _CONTEXT is, whatever the planner guesses of the batch's size.
_CONTEXTS = f"""
SELECT i.ord, r.*
FROM unnest($1::bpchar[], $2::date[], $3::bpchar[], $4::text[])
    WITH ORDINALITY AS i(terminal_id, local_date, stan, pan, ord)
CROSS JOIN LATERAL ({
    _CONTEXT.replace("$1", "i.terminal_id")
    .replace("$2", "i.local_date")
    .replace("$3", "i.stan")
    .replace("$4", "i.pan")
} OFFSET 0) AS r
"""


async def load_contexts(
    pool: asyncpg.Pool, requests: list[tuple[str, RequestKey | None, str | None]]
) -> list[RequestContext | None]:
    """load_context for many (terminal_id, key, pan) in one query, in their order."""
    rows = await pool.fetch(
        _CONTEXTS,
        [terminal_id for terminal_id, _, _ in requests],
        [key.local_date if key else None for _, key, _ in requests],
        [key.stan if key else None for _, key, _ in requests],
        [pan for _, _, pan in requests],
    )
    by_ord = {row["ord"]: row for row in rows}
    contexts: list[RequestContext | None] = []
    for ord_ in range(1, len(requests) + 1):
        row = by_ord.get(ord_)
        contexts.append(_context(row) if row is not None else None)
    return contexts


def _context(row: asyncpg.Record) -> RequestContext:
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
