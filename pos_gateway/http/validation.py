"""Parsing and validating everything that arrives from the network."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

import msgspec
from msgspec import UNSET

from pos_gateway.errors import InvalidInput
from pos_gateway.http.messages import (
    as_lines,
    content_hash,
    decode_batch_close,
    decode_transaction,
)
from pos_gateway.services.batches import figures_digest
from pos_gateway.services.transactions import TransactionRequest

MAX_BODY_BYTES = 16 * 1024
TERMINAL_ID_RE = re.compile(r"[0-9A-Z]{8}")
MERCHANT_ID_RE = re.compile(r"[0-9A-Z]{15}")


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidInput("request body is empty", code="invalid_json")
    try:
        value = json.loads(body)
    # ValueError covers JSONDecodeError and integers past Python's 4,300-digit limit.
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidInput("request body must be a JSON object", code="invalid_json")
    return value


def parse_transaction(body: bytes) -> TransactionRequest:
    """Validate a POST /v1/transactions body strictly: unknown or mistyped fields are 400."""
    message = decode_transaction(body)
    local_date = _local_date(message.local_time, "local_time")
    pin_block = getattr(message, "pin_block", UNSET)
    original_local_time = getattr(message, "original_local_time", UNSET)
    items = getattr(message, "items", UNSET)
    return TransactionRequest(
        txn_type=message.__struct_config__.tag,  # type: ignore[arg-type]
        stan=message.stan,
        local_date=local_date,
        pan=_given(getattr(message, "pan", UNSET)),
        pin_block=None if pin_block is UNSET else bytes.fromhex(pin_block),
        amount=_given(getattr(message, "amount", UNSET)),
        content_hash=content_hash(message),
        original_rrn=_given(getattr(message, "original_rrn", UNSET)),
        original_stan=_given(getattr(message, "original_stan", UNSET)),
        original_local_date=(
            None
            if original_local_time is UNSET
            else _local_date(original_local_time, "original_local_time")
        ),
        items=None if items is UNSET else as_lines(items),
        account_max=_given(getattr(message, "account_max", UNSET)),
    )


def _given(value: Any) -> Any:
    return None if value is UNSET else value


def _local_date(value: object, name: str) -> date:
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput(f"{name} must be an ISO 8601 string", code="invalid_local_time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} must be ISO 8601", code="invalid_local_time") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{name} must carry a UTC offset", code="invalid_local_time")
    return moment.date()


# Operator API fields ------------------------------------------------------------------


# Dates outside these years are typing errors here, and month arithmetic near year 1 or
# 9999 would overflow: refused as malformed.
MIN_YEAR, MAX_YEAR = 1900, 2999


def field_date(data: dict[str, Any], name: str, *, required: bool = True) -> Any:
    value = data.get(name)
    if value is None and not required:
        return None
    problem = f"{name} must be a date YYYY-MM-DD between {MIN_YEAR} and {MAX_YEAR}"
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise InvalidInput(problem)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(problem) from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise InvalidInput(problem)
    return day


def field_month(data: dict[str, Any], name: str) -> date:
    value = data.get(name)
    problem = f"{name} must be a month YYYY-MM between {MIN_YEAR} and {MAX_YEAR}"
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}", value):
        raise InvalidInput(problem)
    try:
        month = date(int(value[:4]), int(value[5:]), 1)
    except ValueError:
        raise InvalidInput(problem) from None
    if not MIN_YEAR <= month.year <= MAX_YEAR:
        raise InvalidInput(problem)
    return month


def parse_batch_close(body: bytes) -> tuple[int, dict[str, Any], bytes]:
    """{"batch_no": 7, "purchases": {"count", "amount"}, "refunds": {"count", "amount"}}."""
    close = decode_batch_close(body)
    figures: dict[str, Any] = {
        "purchases": msgspec.to_builtins(close.purchases),
        "refunds": msgspec.to_builtins(close.refunds),
    }
    return close.batch_no, figures, figures_digest(close.batch_no, figures)


def field_optional_month(data: Any, name: str) -> date | None:
    """A month YYYY-MM from a body or a query string, or None when absent."""
    if data.get(name) is None:
        return None
    return field_month(dict(data), name)


def month_span(query: Any) -> tuple[date | None, date | None]:
    """?from=YYYY-MM&to=YYYY-MM (FROM_MONTH, TO_MONTH), each None when absent."""
    return field_optional_month(query, "from"), field_optional_month(query, "to")


def field_optional_date(data: Any, name: str) -> date | None:
    if data.get(name) is None:
        return None
    return field_date(dict(data), name)
