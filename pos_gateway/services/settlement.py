"""Loading the catalogue and the policies of DESIGN §10 in bulk, and reading them back.

Every row is checked before anything is written; one bad row refuses the whole load with
the line number of each bad row, and a good load is one statement (all or nothing).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import date
from typing import Any

import asyncpg

from pos_gateway.domain.audit import Actor
from pos_gateway.domain.money import is_fen_amount
from pos_gateway.domain.split import BP, CATEGORIES
from pos_gateway.errors import InvalidInput
from pos_gateway.store import audit
from pos_gateway.store import settlement as store

CATALOGUE_COLUMNS = ("code", "name", "category", "self_pay_bp")
POLICY_COLUMNS = (
    "merchant_kind", "year", "deductible", "fund_ratio_bp", "annual_cap",
    "daily_amount_limit", "daily_count_limit",
)  # fmt: skip
_REQUIRED_POLICY = POLICY_COLUMNS[:5]
MERCHANT_KINDS = frozenset({"pharmacy", "hospital"})
MAX_ROWS = 10_000
_CODE_RE = re.compile(r"[0-9A-Za-z._-]{1,40}")


class RowsRefused(InvalidInput):
    code = "rows_refused"

    def __init__(self, problems: list[str], lines: list[int] | None = None, rows: int = 0) -> None:
        shown = "; ".join(problems[:20]) + ("; …" if len(problems) > 20 else "")
        super().__init__(f"{len(problems)} bad row(s), nothing loaded: {shown}")
        self.problems = problems
        self.lines = lines or []  # the bad rows' line numbers, for pages to say in words
        self.rows = rows  # how many rows the load had, good and bad


def _int(value: object, *, text: bool) -> int | None:
    """An integer from JSON (int only) or from CSV text (digits only)."""
    if text:
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):
            return int(value.strip())
        return None
    return value if type(value) is int else None


def _catalogue_row(row: Mapping[str, Any], text: bool) -> dict[str, Any] | str:
    if set(row) - set(CATALOGUE_COLUMNS) or not {"code", "name", "category"} <= set(row):
        return f"columns must be {', '.join(CATALOGUE_COLUMNS)} (self_pay_bp optional)"
    code, name, category = row["code"], row["name"], row["category"]
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code.strip()):
        return "code must be 1 to 40 letters, digits, '.', '_' or '-'"
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        return "name must be 1 to 200 characters"
    if not isinstance(category, str) or category.strip() not in CATEGORIES:
        return "category must be A, B or C"
    category = category.strip()
    raw_bp = row.get("self_pay_bp")
    if raw_bp in (None, "") and category != "B":
        bp: int | None = 0
    else:
        bp = _int(raw_bp, text=text)
    if bp is None or not 0 <= bp <= BP:
        return "self_pay_bp must be an integer from 0 to 10000"
    if category != "B" and bp != 0:
        return "self_pay_bp applies to category B only (0 for A and C)"
    return {"code": code.strip(), "name": name.strip(), "category": category, "self_pay_bp": bp}


def _policy_row(row: Mapping[str, Any], text: bool) -> dict[str, Any] | str:
    if set(row) - set(POLICY_COLUMNS) or not set(_REQUIRED_POLICY) <= set(row):
        return f"columns must be {', '.join(POLICY_COLUMNS)} (the daily limits optional)"
    kind = row["merchant_kind"]
    if not isinstance(kind, str) or kind.strip() not in MERCHANT_KINDS:
        return "merchant_kind must be pharmacy or hospital"
    out: dict[str, Any] = {"merchant_kind": kind.strip()}
    year = _int(row["year"], text=text)
    if year is None or not 1900 <= year <= 2999:
        return "year must be an integer from 1900 to 2999"
    out["year"] = year
    for name in ("deductible", "annual_cap"):
        value = _int(row[name], text=text)
        if value is None or not is_fen_amount(value):
            return f"{name} must be a non-negative integer number of fen"
        out[name] = value
    ratio = _int(row["fund_ratio_bp"], text=text)
    if ratio is None or not 0 <= ratio <= BP:
        return "fund_ratio_bp must be an integer from 0 to 10000"
    out["fund_ratio_bp"] = ratio
    for name in ("daily_amount_limit", "daily_count_limit"):
        raw = row.get(name)
        if raw in (None, ""):
            out[name] = None
            continue
        value = _int(raw, text=text)
        if value is None or not 0 < value <= 2**31 - 1:
            return f"{name} must be a positive integer (or empty: no limit)"
        out[name] = value
    return out


def _check_rows(
    rows: Iterable[tuple[int, Mapping[str, Any]]], check, text: bool, key: tuple[str, ...]
) -> list[dict[str, Any]]:
    good: list[dict[str, Any]] = []
    problems: list[str] = []
    lines: list[int] = []
    seen: dict[tuple, int] = {}
    for line, row in rows:
        if not isinstance(row, Mapping):
            problem = "must be an object"
        elif isinstance(checked := check(row, text), str):
            problem = checked
        elif (ident := tuple(checked[k] for k in key)) in seen:
            problem = f"same {'/'.join(key)} as line {seen[ident]}"
        else:
            seen[ident] = line
            good.append(checked)
            continue
        problems.append(f"line {line}: {problem}")
        lines.append(line)
    if len(good) + len(problems) > MAX_ROWS:
        problems.append(f"at most {MAX_ROWS} rows in one load")
    if not good and not problems:
        problems.append("no rows")
    if problems:
        raise RowsRefused(problems, lines, len(good) + len(lines))
    return good


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    rows = []
    for row in reader:
        # A row with more cells than the header puts them under None: refused by columns.
        rows.append((reader.line_num, {k: v for k, v in row.items() if k is not None or v}))
    return rows


def check_catalogue(rows: list[Any] | str) -> list[dict[str, Any]]:
    """JSON rows (lines numbered from 1) or CSV text with a header (numbered as in the
    file, the header being line 1)."""
    if isinstance(rows, str):
        return _check_rows(_csv_rows(rows), _catalogue_row, True, ("code",))
    return _check_rows(enumerate(rows, start=1), _catalogue_row, False, ("code",))


def check_policies(rows: list[Any] | str) -> list[dict[str, Any]]:
    key = ("merchant_kind", "year")
    if isinstance(rows, str):
        return _check_rows(_csv_rows(rows), _policy_row, True, key)
    return _check_rows(enumerate(rows, start=1), _policy_row, False, key)


# Audit subjects of a load: the table loaded (subject kinds of migration 010).
CATALOGUE_SUBJECT = ("catalogue", "catalogue_items")
POLICY_SUBJECT = ("policy", "settlement_policies")


async def _load(
    pool: asyncpg.Pool,
    rows: list[Any] | str,
    actor: Actor,
    check: Callable[[list[Any] | str], list[dict[str, Any]]],
    upsert: Callable[[asyncpg.Connection, list[dict[str, Any]]], Awaitable[None]],
    subject: tuple[str, str],
) -> int:
    """All or nothing, and every load audited under `actor` with its outcome and counts
    (never the rows: what was loaded is in the table itself): a good load in its own
    transaction, a refused one alone (nothing else is written)."""
    kind = subject[0]
    try:
        good = check(rows)
    except RowsRefused as refused:
        details = {"rows": refused.rows, "refused_rows": len(refused.lines)}
        async with pool.acquire() as conn:
            await audit.record(conn, actor, f"{kind}.load_refused", *subject, details)
        raise
    async with pool.acquire() as conn, conn.transaction():
        await upsert(conn, good)
        await audit.record(conn, actor, f"{kind}.loaded", *subject, {"rows": len(good)})
    return len(good)


async def load_catalogue(pool: asyncpg.Pool, rows: list[Any] | str, *, actor: Actor) -> int:
    return await _load(
        pool, rows, actor, check_catalogue, store.upsert_catalogue, CATALOGUE_SUBJECT
    )


async def load_policies(pool: asyncpg.Pool, rows: list[Any] | str, *, actor: Actor) -> int:
    return await _load(pool, rows, actor, check_policies, store.upsert_policies, POLICY_SUBJECT)


async def catalogue(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.list_catalogue(pool)]


async def policies(pool: asyncpg.Pool, year: int | None = None) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.list_policies(pool, year)]


async def fund_liability(
    pool: asyncpg.Pool, since: date, until: date, merchant_id: str | None
) -> list[dict[str, Any]]:
    if until < since:
        raise InvalidInput("until must not be before from")
    rows = await store.fund_liability(pool, since, until, merchant_id)
    return [{**dict(r), "local_date": r["local_date"].isoformat()} for r in rows]
