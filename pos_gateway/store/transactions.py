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

_RETURNING = """
RETURNING terminal_id, local_date, stan, request_hash, txn_type, transaction_id, rrn,
          amount, balance, response_code, auth_code
"""


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
    def from_row(cls, row: asyncpg.Record) -> StoredAnswer:
        return cls(
            txn_type=row["txn_type"],
            request_hash=bytes(row["request_hash"]),
            transaction_id=row["transaction_id"],
            rrn=row["rrn"],
            stan=row["stan"],
            amount=row["amount"],
            balance=row["balance"],
            response_code=row["response_code"],
            auth_code=row["auth_code"],
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
), pin_reset AS (
    UPDATE cards SET pin_failures = 0
    WHERE card_id = $7 AND pin_failures BETWEEN 1 AND $10 - 1
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
