"""Read-side queries: statements, settlement, and the ledger verification."""

from __future__ import annotations

from datetime import date

import asyncpg

# The statement's lines, the same for the paged statement (here) and the period one
# (store/pages.py).
STATEMENT_LINES = """
SELECT j.entry_id, j.kind, j.amount, j.balance_after, j.created_at, j.reference,
       j.terminal_id, j.merchant_id, m.name AS merchant_name, t.rrn
FROM journal j
LEFT JOIN merchants m ON m.merchant_id = j.merchant_id
LEFT JOIN transactions t ON t.transaction_id = j.transaction_id
"""
_STATEMENT = (
    STATEMENT_LINES
    + """-- One range on the primary key, no OR: with `$2 IS NULL OR entry_id < $2` the scan
-- started at the newest entry and filtered its way down (11 ms at the far end of 10^5
-- entries against 1 ms for page 1; bench --scale).
WHERE j.account_id = $1 AND j.entry_id < coalesce($2::bigint, 9223372036854775807)
ORDER BY j.entry_id DESC
LIMIT $3
"""
)


async def statement_page(
    conn: asyncpg.Connection | asyncpg.Pool, account_id: int, before: int | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first; keyset on the journal's primary key (account_id, entry_id), so page
    1,000 of a long statement costs what page 1 does."""
    return await conn.fetch(_STATEMENT, account_id, before, limit)


_SETTLEMENT = """
SELECT t.merchant_id, m.name AS merchant_name, t.local_date,
       count(*) FILTER (WHERE t.txn_type = 'purchase') AS purchases_count,
       coalesce(sum(t.amount) FILTER (WHERE t.txn_type = 'purchase'), 0)::bigint
           AS purchases_amount,
       count(*) FILTER (WHERE t.txn_type = 'refund') AS refunds_count,
       coalesce(sum(t.amount) FILTER (WHERE t.txn_type = 'refund'), 0)::bigint AS refunds_amount,
       count(*) FILTER (WHERE t.txn_type = 'reversal' AND t.amount > 0) AS reversals_count,
       coalesce(sum(t.amount) FILTER (WHERE t.txn_type = 'reversal'), 0)::bigint AS reversals_amount
FROM transactions t JOIN merchants m USING (merchant_id)
WHERE t.local_date = $1 AND t.response_code = '00'
  AND t.txn_type IN ('purchase', 'refund', 'reversal')
  AND ($2::text IS NULL OR t.merchant_id = $2)
GROUP BY t.merchant_id, m.name, t.local_date
ORDER BY t.merchant_id
"""


async def settlement(
    conn: asyncpg.Connection | asyncpg.Pool, day: date, merchant_id: str | None
) -> list[asyncpg.Record]:
    """Per merchant, approved purchases, refunds and reversals of one terminal-local day."""
    return await conn.fetch(_SETTLEMENT, day, merchant_id)


# Each check returns the rows that break one rule of the ledger; all empty means clean.
LEDGER_CHECKS: dict[str, str] = {
    "balance_differs_from_journal_sum": """
        SELECT a.account_id, a.balance, coalesce(j.total, 0) AS journal_sum
        FROM individual_accounts a
        LEFT JOIN (SELECT account_id, sum(amount)::bigint AS total
                   FROM journal GROUP BY account_id) j
               USING (account_id)
        WHERE a.balance <> coalesce(j.total, 0)
    """,
    "last_balance_after_differs": """
        SELECT a.account_id, a.balance, last.balance_after
        FROM individual_accounts a
        JOIN (SELECT DISTINCT ON (account_id) account_id, balance_after
              FROM journal ORDER BY account_id, entry_id DESC) last USING (account_id)
        WHERE a.balance <> last.balance_after
    """,
    "journal_lines_do_not_match_transaction": """
        SELECT t.transaction_id, t.txn_type, t.response_code, t.amount,
               count(j.entry_id) AS lines, coalesce(sum(j.amount), 0)::bigint AS journal_amount
        FROM transactions t
        LEFT JOIN journal j ON j.transaction_id = t.transaction_id
        GROUP BY t.transaction_id, t.txn_type, t.response_code, t.amount
        HAVING coalesce(sum(j.amount), 0) <> CASE
                   WHEN t.response_code <> '00' THEN 0
                   WHEN t.txn_type = 'purchase' THEN -t.amount
                   WHEN t.txn_type IN ('refund', 'reversal') THEN t.amount
                   ELSE 0 END
            OR count(j.entry_id) > 1
    """,
    "refunds_exceed_or_differ_from_original": """
        SELECT p.transaction_id, p.rrn, p.amount, p.refunded_amount,
               coalesce(sum(r.amount), 0)::bigint AS refunds
        FROM transactions p
        LEFT JOIN transactions r ON r.original_transaction_id = p.transaction_id
             AND r.txn_type = 'refund' AND r.response_code = '00'
        WHERE p.txn_type = 'purchase'
        GROUP BY p.transaction_id, p.rrn, p.amount, p.refunded_amount
        HAVING p.refunded_amount <> coalesce(sum(r.amount), 0)
            OR coalesce(sum(r.amount), 0) > coalesce(p.amount, 0)
    """,
    "purchase_reversed_more_than_once": """
        SELECT original_transaction_id, count(*) AS reversals, sum(amount) AS credited
        FROM transactions
        WHERE txn_type = 'reversal' AND response_code = '00' AND amount > 0
        GROUP BY original_transaction_id
        HAVING count(*) > 1
    """,
    "more_returned_than_paid": """
        SELECT p.transaction_id, p.amount,
               p.refunded_amount + coalesce(sum(v.amount), 0)::bigint AS returned
        FROM transactions p
        LEFT JOIN transactions v ON v.original_transaction_id = p.transaction_id
             AND v.txn_type = 'reversal' AND v.response_code = '00'
        WHERE p.txn_type = 'purchase' AND p.response_code = '00'
        GROUP BY p.transaction_id, p.amount, p.refunded_amount
        HAVING p.refunded_amount + coalesce(sum(v.amount), 0) > p.amount
    """,
    "allocation_not_journaled_once": """
        SELECT a.account_id, a.month, a.amount, coalesce(sum(j.amount), 0)::bigint AS journaled
        FROM allocations a
        LEFT JOIN journal j ON j.account_id = a.account_id AND j.kind = 'allocation'
             AND j.reference = 'allocation ' || to_char(a.month, 'YYYY-MM')
        GROUP BY a.account_id, a.month, a.amount
        HAVING coalesce(sum(j.amount), 0) <> a.amount
    """,
    "reversed_flag_without_reversal": """
        SELECT p.transaction_id FROM transactions p
        WHERE p.reversed AND NOT EXISTS (
            SELECT 1 FROM transactions v
            WHERE v.original_transaction_id = p.transaction_id AND v.txn_type = 'reversal')
    """,
}


def _all_checks() -> dict[str, str]:
    from pos_gateway.store.distribution import link_checks
    from pos_gateway.store.settlement import SETTLEMENT_CHECKS

    return {**LEDGER_CHECKS, **SETTLEMENT_CHECKS, **link_checks()}


async def ledger_problems(
    conn: asyncpg.Connection, limit_per_check: int = 20
) -> dict[str, list[dict[str, object]]]:
    """Run every check in one repeatable-read snapshot; return the offending rows by check."""
    problems: dict[str, list[dict[str, object]]] = {}

    async def run_checks() -> None:
        for name, sql in _all_checks().items():
            rows = await conn.fetch(f"{sql} LIMIT {int(limit_per_check)}")
            if rows:
                problems[name] = [dict(r) for r in rows]

    if conn.is_in_transaction():  # the caller's transaction is the snapshot
        await run_checks()
    else:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await run_checks()
    return problems


async def ledger_size(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        """
        SELECT (SELECT count(*) FROM individual_accounts) AS accounts,
               (SELECT count(*) FROM journal) AS journal_lines,
               (SELECT count(*) FROM transactions) AS transactions
        """
    )
    return dict(row)
