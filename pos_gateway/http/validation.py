"""Parsing and validating everything that arrives from the network."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from typing import Any

import msgspec
from msgspec import UNSET

from pos_gateway.domain.money import is_fen_amount
from pos_gateway.errors import BadRequest
from pos_gateway.http.messages import (
    as_lines,
    content_hash,
    decode_batch_close,
    decode_transaction,
)
from pos_gateway.services.transactions import TransactionRequest

MAX_BODY_BYTES = 16 * 1024
STAN_RE = re.compile(r"[0-9]{6}")
TERMINAL_ID_RE = re.compile(r"[0-9A-Z]{8}")
MERCHANT_ID_RE = re.compile(r"[0-9A-Z]{15}")

RRN_RE = re.compile(r"[0-9]{12}")


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadRequest("request body is empty", code="invalid_json")
    try:
        value = json.loads(body)
    # ValueError covers JSONDecodeError and integers past Python's 4,300-digit limit.
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
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
        raise BadRequest(f"{name} must be an ISO 8601 string", code="invalid_local_time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be ISO 8601", code="invalid_local_time") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name} must carry a UTC offset", code="invalid_local_time")
    return moment.date()


# Operator API fields ------------------------------------------------------------------


def field_str(data: dict[str, Any], name: str, *, max_len: int = 200, required: bool = True) -> Any:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise BadRequest(f"{name} must be a non-empty string of at most {max_len} characters")
    if not text_storable(value):
        raise BadRequest(f"{name} must not contain NUL or unpaired surrogates", code="invalid_text")
    return value.strip()


def text_storable(value: str) -> bool:
    """Text PostgreSQL can store: no NUL character, and valid UTF-8 (no lone surrogate)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Dates outside these years are typing errors here, and month arithmetic near year 1 or
# 9999 would overflow: refused as malformed.
MIN_YEAR, MAX_YEAR = 1900, 2999


def field_date(data: dict[str, Any], name: str, *, required: bool = True) -> Any:
    value = data.get(name)
    if value is None and not required:
        return None
    problem = f"{name} must be a date YYYY-MM-DD between {MIN_YEAR} and {MAX_YEAR}"
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise BadRequest(problem)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadRequest(problem) from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise BadRequest(problem)
    return day


def field_month(data: dict[str, Any], name: str) -> date:
    value = data.get(name)
    problem = f"{name} must be a month YYYY-MM between {MIN_YEAR} and {MAX_YEAR}"
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}", value):
        raise BadRequest(problem)
    try:
        month = date(int(value[:4]), int(value[5:]), 1)
    except ValueError:
        raise BadRequest(problem) from None
    if not MIN_YEAR <= month.year <= MAX_YEAR:
        raise BadRequest(problem)
    return month


def field_fen(data: dict[str, Any], name: str, *, default: int | None = None) -> int:
    if name not in data and default is not None:
        return default
    value = data.get(name)
    if not is_fen_amount(value):
        raise BadRequest(f"{name} must be a non-negative integer number of fen")
    return value


def only_fields(data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(data.keys() - allowed)
    if extra:
        raise BadRequest(f"unexpected field(s): {', '.join(e[:40] for e in extra[:5])}")


def parse_batch_close(body: bytes) -> tuple[int, dict[str, Any], bytes]:
    """{"batch_no": 7, "purchases": {"count", "amount"}, "refunds": {"count", "amount"}}."""
    close = decode_batch_close(body)
    figures: dict[str, Any] = {
        "purchases": msgspec.to_builtins(close.purchases),
        "refunds": msgspec.to_builtins(close.refunds),
    }
    digest = hashlib.sha256(json.dumps([close.batch_no, figures], sort_keys=True).encode()).digest()
    return close.batch_no, figures, digest


def unchecked(data: dict[str, Any], name: str) -> Any:
    """A field passed on as sent, for a service that validates it itself (the ssn: its
    check character is a domain rule, checked_ssn)."""
    return data.get(name)


def field_password(data: dict[str, Any], name: str) -> str:
    """Printable ASCII, at most 64 characters: what a password can be (the rules for a new
    one are domain rules, checked by the service)."""
    value = data.get(name)
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= 64
        or not all(" " <= c <= "~" for c in value)
    ):
        raise BadRequest(
            f"{name} must be 1 to 64 printable ASCII characters", code="invalid_password"
        )
    return value


def field_pin(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise BadRequest(f"{name} must be a string of 4 to 12 digits", code="invalid_pin")
    if not 4 <= len(value) <= 12:
        raise BadRequest(f"{name} must be a string of 4 to 12 digits", code="invalid_pin")
    return value


def field_optional_month(data: Any, name: str) -> date | None:
    """A month YYYY-MM from a body or a query string, or None when absent."""
    if data.get(name) is None:
        return None
    return field_month(dict(data), name)


def field_optional_date(data: Any, name: str) -> date | None:
    if data.get(name) is None:
        return None
    return field_date(dict(data), name)
