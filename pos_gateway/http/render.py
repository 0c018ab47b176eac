"""Response formats shared by the handlers: CSV downloads and query parameters."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

from pos_gateway.domain.display import format_iso_time, format_yuan
from pos_gateway.errors import InvalidInput

STATEMENT_COLUMNS = (
    "entry_id", "time", "kind", "amount", "balance_after", "merchant_id", "merchant_name",
    "terminal_id", "rrn", "reference",
)  # fmt: skip
SETTLEMENT_COLUMNS = (
    "local_date", "merchant_id", "merchant_name", "purchases_count", "purchases_amount",
    "refunds_count", "refunds_amount", "reversals_count", "reversals_amount", "net_amount",
    "account_amount", "fund_amount", "cash_amount",
)  # fmt: skip


# CSVs are read by people (DESIGN §11): amounts in yuan with two decimals, times in the
# scheme's time zone (Asia/Shanghai, "YYYY-MM-DD HH:MM:SS"); the JSON keeps fen and ISO.
MONEY_COLUMNS = frozenset(
    {"amount", "balance_after", "purchases_amount", "refunds_amount", "reversals_amount",
     "net_amount", "employer_part", "individual_part"}
)  # fmt: skip
TIME_COLUMNS = frozenset({"time", "allocated_at"})


def wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise InvalidInput("format must be json or csv", code="invalid_format")
    return fmt == "csv"


def query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise InvalidInput(f"{name} must be a positive integer", code=f"invalid_{name}")
    return int(raw)


def path_int(request: web.Request, name: str) -> int:
    """A positive integer from the URL path (ids), or 400."""
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(f"{name} must be a positive integer")
    return int(raw)


def _cell(column: str, value: Any) -> Any:
    if column in MONEY_COLUMNS and type(value) is int:
        return format_yuan(value)
    if column in TIME_COLUMNS and isinstance(value, str) and value:
        return format_iso_time(value)
    # Cells starting with = + - @ are formulas to a spreadsheet: text from the database
    # (merchant names) must not run as one.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def csv_response(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], filename: str
) -> web.Response:
    """Amounts in yuan (exact: integer fen divided as digits, never a float)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(c, row.get(c)) for c in columns])
    return web.Response(
        text=buffer.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
