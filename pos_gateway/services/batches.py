"""Batch close and reconciliation of a terminal's totals with the gateway's."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg

from pos_gateway.errors import ConflictsWithRecord
from pos_gateway.store import batches as store


def figures_digest(batch_no: int, figures: dict[str, Any]) -> bytes:
    """Identifies a close by its batch number and figures, whichever transport sent it."""
    return hashlib.sha256(json.dumps([batch_no, figures], sort_keys=True).encode()).digest()


def _figures(count: int, amount: int) -> dict[str, int]:
    return {"count": count, "amount": amount}


async def close_batch(
    pool: asyncpg.Pool, terminal_id: str, batch_no: int, terminal_figures: dict[str, Any],
    request_hash: bytes,
) -> dict[str, Any]:  # fmt: skip
    """Compare the terminal's totals with the gateway's and open the next batch; the same
    close sent again gets the same answer."""
    try:
        row = await store.close(pool, terminal_id, batch_no, terminal_figures, request_hash)
    except store.BatchMismatch as exc:
        raise ConflictsWithRecord(
            f"batch {batch_no} is not open; the open batch is {exc.current}",
            code="batch_mismatch",
        ) from None
    if bytes(row["request_hash"]) != request_hash:
        raise ConflictsWithRecord(
            f"batch {batch_no} was already closed with other figures", code="batch_closed"
        )
    return {
        "batch_no": row["batch_no"],
        "in_balance": row["in_balance"],
        "gateway": {
            "purchases": _figures(row["purchases_count"], row["purchases_amount"]),
            "refunds": _figures(row["refunds_count"], row["refunds_amount"]),
        },
        "terminal": json.loads(row["terminal_figures"]),
        "next_batch_no": row["batch_no"] + 1,
    }
