"""Statements, settlement reports and the ledger verification."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from pos_gateway.errors import InvalidInput
from pos_gateway.store import reports
from pos_gateway.store import settlement as split_store

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class StatementPage:
    entries: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"e{entry_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("e") or not raw[1:].isdigit() or len(raw) > 20:
            raise ValueError
        value = int(raw[1:])
        if value >= 2**63:  # beyond bigint: not an id this API gave out
            raise ValueError
        return value
    except ValueError:
        raise InvalidInput("cursor is not one this API gave out", code="invalid_cursor") from None


def check_limit(limit: int, most: int = MAX_PAGE) -> None:
    if not 1 <= limit <= most:
        raise InvalidInput(f"limit must be 1..{most}", code="invalid_limit")


def cut_page(rows: list[Any], limit: int, key: str) -> tuple[list[Any], str | None]:
    """Keyset paging: `rows` was fetched with limit + 1; the extra row only says that
    another page exists, whose cursor is the last kept row's `key`."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1][key])


async def statement(
    pool: asyncpg.Pool, account_id: int, cursor: str | None, limit: int
) -> StatementPage:
    """Allocation and consumption records, newest first; pass next_cursor for the next page."""
    check_limit(limit)
    before = decode_cursor(cursor) if cursor else None
    rows, next_cursor = cut_page(
        await reports.statement_page(pool, account_id, before, limit + 1), limit, "entry_id"
    )
    entries = [
        {
            "entry_id": r["entry_id"],
            "time": r["created_at"].isoformat(),
            "kind": r["kind"],
            "amount": r["amount"],
            "balance_after": r["balance_after"],
            "merchant_id": r["merchant_id"],
            "merchant_name": r["merchant_name"],
            "terminal_id": r["terminal_id"],
            "rrn": r["rrn"],
            "reference": r["reference"],
        }
        for r in rows
    ]
    return StatementPage(entries, next_cursor)


async def settlement(pool: asyncpg.Pool, day: date, merchant_id: str | None) -> list[dict]:
    """What each merchant is owed for a day: purchases less refunds and reversals."""
    out = []
    split_parts = await split_store.fund_and_cash(pool, day, merchant_id)
    for r in await reports.settlement(pool, day, merchant_id):
        row = dict(r)
        row["local_date"] = r["local_date"].isoformat()
        row["net_amount"] = r["purchases_amount"] - r["refunds_amount"] - r["reversals_amount"]
        # DESIGN §10: the individual account's net, the pooled fund's share owed to the
        # merchant and the cash collected at the counter (itemised purchases).
        parts = split_parts.get(r["merchant_id"])
        row["account_amount"] = row["net_amount"]
        row["fund_amount"] = parts["fund_amount"] if parts else 0
        row["cash_amount"] = parts["cash_amount"] if parts else 0
        out.append(row)
    return out


_SUMMED = (
    "purchases_count", "purchases_amount", "refunds_count", "refunds_amount",
    "reversals_count", "reversals_amount", "net_amount",
)  # fmt: skip


def settlement_totals(rows: list[dict]) -> dict[str, int]:
    """The day's totals over the merchants listed (the report's last row)."""
    return {name: sum(r[name] for r in rows) for name in _SUMMED}


async def verify_ledger(conn: asyncpg.Connection) -> dict[str, Any]:
    """Recompute balances from the journal and check refunds and reversals, and the links
    between rows of different distribution keys that are no foreign keys
    (store/distribution.LINKS); `ok` is False with the offending rows when any rule is
    broken."""
    problems = await reports.ledger_problems(conn)
    return {"ok": not problems, "checked": await reports.ledger_size(conn), "problems": problems}
