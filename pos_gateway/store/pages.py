"""Read-only queries of the web pages: searches and lists of the office, the cardholder's
statement by period."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from pos_gateway.store.reports import STATEMENT_LINES


def _literal_like(text: str) -> str:
    """LIKE's own wildcards in a typed name are matched literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search_people(
    conn: asyncpg.Connection | asyncpg.Pool, ssn: str | None, name: str | None, limit: int
) -> list[asyncpg.Record]:
    """By exact ID number, or by a part of the name (case-insensitive)."""
    return await conn.fetch(
        """
        SELECT p.ssn, p.name, a.account_id, a.balance, a.status AS account_status,
               (SELECT count(*) FROM cards c WHERE c.account_id = a.account_id
                                            AND c.status = 'active') AS active_cards
        FROM people p LEFT JOIN individual_accounts a USING (ssn)
        WHERE ($1::text IS NULL OR p.ssn = $1)
          AND ($2::text IS NULL OR p.name ILIKE '%' || $2 || '%')
        ORDER BY p.name, p.ssn
        LIMIT $3
        """,
        ssn,
        None if name is None else _literal_like(name),
        limit,
    )


async def merchants_with_terminals(
    conn: asyncpg.Connection | asyncpg.Pool, name: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT m.merchant_id, m.name, m.kind, m.designated_from, m.designated_until,
               m.suspended,
               ARRAY(SELECT t.terminal_id || ':' || t.status FROM terminals t
                     WHERE t.merchant_id = m.merchant_id ORDER BY t.terminal_id) AS terminals
        FROM merchants m
        WHERE $1::text IS NULL OR m.name ILIKE '%' || $1 || '%' OR m.merchant_id = upper($1)
        ORDER BY m.name
        LIMIT $2
        """,
        None if name is None else _literal_like(name),
        limit,
    )


async def terminals_with_last_transaction(
    conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT t.terminal_id, t.status, t.merchant_id, m.name AS merchant_name,
               last.created_at AS last_at, last.txn_type AS last_type,
               last.response_code AS last_response_code, last.amount AS last_amount
        FROM terminals t JOIN merchants m USING (merchant_id)
        LEFT JOIN LATERAL (
            SELECT x.created_at, x.txn_type, x.response_code, x.amount
            FROM transactions x WHERE x.terminal_id = t.terminal_id
            ORDER BY x.local_date DESC, x.created_at DESC LIMIT 1
        ) last ON true
        WHERE $1::text IS NULL OR t.merchant_id = $1
        ORDER BY t.terminal_id
        LIMIT $2
        """,
        merchant_id,
        limit,
    )


async def employers(conn: asyncpg.Connection | asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT e.employer_id, e.name, e.created_at,
               (SELECT count(*) FROM employments x WHERE x.employer_id = e.employer_id
                                                   AND x.ended_on IS NULL) AS employees
        FROM employers e ORDER BY e.name LIMIT $1
        """,
        limit,
    )


_PERIOD_STATEMENT = (
    STATEMENT_LINES
    + """WHERE j.account_id = $1 AND j.created_at >= $2 AND j.created_at < $3
  AND ($4::bigint IS NULL OR j.entry_id > $4)
ORDER BY j.entry_id
LIMIT $5
"""
)


async def statement_period(
    conn: asyncpg.Connection | asyncpg.Pool,
    account_id: int,
    start: datetime,
    end: datetime,
    after: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Journal lines of [start, end), oldest first, keyset on entry_id."""
    return await conn.fetch(_PERIOD_STATEMENT, account_id, start, end, after, limit)


async def balance_before(
    conn: asyncpg.Connection | asyncpg.Pool, account_id: int, at: datetime
) -> int:
    """The balance after the last journal line before `at` (0 before the first)."""
    value = await conn.fetchval(
        """
        SELECT balance_after FROM journal
        WHERE account_id = $1 AND created_at < $2
        ORDER BY created_at DESC, entry_id DESC LIMIT 1
        """,
        account_id,
        at,
    )
    return value or 0
