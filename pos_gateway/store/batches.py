"""Terminal batches: totals computed from the transactions, never kept as running rows."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


class BatchMismatch(Exception):
    """The terminal closes a batch that is not its open one (nor one already closed)."""

    def __init__(self, current: int) -> None:
        super().__init__(current)
        self.current = current


_TOTALS = """
SELECT count(*) FILTER (WHERE t.txn_type = 'purchase') AS purchases_count,
       coalesce(sum(t.amount) FILTER (WHERE t.txn_type = 'purchase'), 0)::bigint
           AS purchases_amount,
       count(*) FILTER (WHERE t.txn_type = 'refund') AS refunds_count,
       coalesce(sum(t.amount) FILTER (WHERE t.txn_type = 'refund'), 0)::bigint AS refunds_amount
FROM transactions t
LEFT JOIN transactions o ON o.transaction_id = t.original_transaction_id
WHERE t.terminal_id = $1 AND t.batch_no = $2 AND t.response_code = '00'
  AND t.txn_type IN ('purchase', 'refund') AND NOT t.reversed
  -- A reversed purchase leaves the batch with its refunds: the reversal returned the rest.
  AND NOT (t.txn_type = 'refund' AND coalesce(o.reversed, false))
"""


async def close(
    pool: asyncpg.Pool,
    terminal_id: str,
    batch_no: int,
    terminal_figures: dict[str, Any],
    request_hash: bytes,
) -> asyncpg.Record:
    """Close the open batch (or return the stored close of an earlier one).

    The terminal row is locked FOR UPDATE: transactions in flight hold FOR KEY SHARE on it
    (see 002_lifecycle.sql), so the totals below include every one of them, and the ones
    that come after land in the next batch."""
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchval(
            "SELECT current_batch FROM terminals WHERE terminal_id = $1 FOR UPDATE", terminal_id
        )
        if batch_no < current:
            stored = await conn.fetchrow(
                "SELECT * FROM batches WHERE terminal_id = $1 AND batch_no = $2",
                terminal_id,
                batch_no,
            )
            if stored is None:
                raise BatchMismatch(current)
            return stored
        if batch_no != current:
            raise BatchMismatch(current)
        totals = await conn.fetchrow(_TOTALS, terminal_id, batch_no)
        in_balance = (
            totals["purchases_count"] == terminal_figures["purchases"]["count"]
            and totals["purchases_amount"] == terminal_figures["purchases"]["amount"]
            and totals["refunds_count"] == terminal_figures["refunds"]["count"]
            and totals["refunds_amount"] == terminal_figures["refunds"]["amount"]
        )
        row = await conn.fetchrow(
            """
            INSERT INTO batches (terminal_id, batch_no, purchases_count, purchases_amount,
                                 refunds_count, refunds_amount, terminal_figures,
                                 request_hash, in_balance)
            VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)
            RETURNING *
            """,
            terminal_id,
            batch_no,
            totals["purchases_count"],
            totals["purchases_amount"],
            totals["refunds_count"],
            totals["refunds_amount"],
            json.dumps(terminal_figures),
            request_hash,
            in_balance,
        )
        await conn.execute(
            "UPDATE terminals SET current_batch = current_batch + 1 WHERE terminal_id = $1",
            terminal_id,
        )
        return row
