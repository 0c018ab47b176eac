"""Parsing and validating everything that arrives from the network."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from typing import Any

from pos_gateway.domain.cards import pan_well_formed
from pos_gateway.domain.identity import request_identity
from pos_gateway.domain.money import CURRENCY, is_fen_amount
from pos_gateway.errors import BadRequest
from pos_gateway.security.pins import PIN_BLOCK_BYTES
from pos_gateway.services.transactions import TransactionRequest

MAX_BODY_BYTES = 16 * 1024
STAN_RE = re.compile(r"[0-9]{6}")
TERMINAL_ID_RE = re.compile(r"[0-9A-Z]{8}")
MERCHANT_ID_RE = re.compile(r"[0-9A-Z]{15}")
_PIN_BLOCK_RE = re.compile(rf"[0-9a-fA-F]{{{2 * PIN_BLOCK_BYTES}}}")

_COMMON = {"type", "stan", "local_time"}
# type -> (required fields, optional fields)
TRANSACTION_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "purchase": (
        frozenset(_COMMON | {"pan", "pin_block", "amount", "currency"}),
        frozenset({"items", "account_max"}),
    ),
    # DESIGN §10: the split of an itemised purchase, answered and moving nothing.
    "settlement_trial": (
        frozenset(_COMMON | {"pan", "amount", "currency", "items"}),
        frozenset({"pin_block", "account_max"}),
    ),
    "balance_inquiry": (frozenset(_COMMON | {"pan", "pin_block"}), frozenset({"currency"})),
    "cash_withdrawal": (
        frozenset(_COMMON | {"pan", "amount", "currency"}),
        frozenset({"pin_block"}),
    ),
    "transfer": (
        frozenset(_COMMON | {"pan", "amount", "currency"}),
        frozenset({"pin_block"}),
    ),
    "refund": (
        frozenset(_COMMON | {"original_rrn", "amount", "currency"}),
        frozenset({"pan"}),
    ),
    # The original's amount and card may be sent along; the gateway reverses what it
    # recorded, not what the reversal claims.
    # original_local_time (ISO 8583 field 90 in spirit) pins the original's date; without
    # it the original is looked for on the reversal's date and the day before.
    "reversal": (
        frozenset(_COMMON | {"original_stan"}),
        frozenset({"pan", "amount", "currency", "original_local_time"}),
    ),
}
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
    data = parse_json_object(body)
    txn_type = data.get("type")
    if not isinstance(txn_type, str):
        raise BadRequest("type is required and must be a string", code="missing_field")
    if txn_type not in TRANSACTION_FIELDS:
        raise BadRequest(f"unknown transaction type {txn_type[:40]!r}", code="unknown_type")
    required, optional = TRANSACTION_FIELDS[txn_type]
    missing = sorted(required - data.keys())
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(missing)}", code="missing_field")
    extra = sorted(data.keys() - required - optional)
    if extra:
        raise BadRequest(
            f"unexpected field(s): {', '.join(e[:40] for e in extra[:5])}", code="unexpected_field"
        )

    stan = data["stan"]
    if not isinstance(stan, str) or not STAN_RE.fullmatch(stan):
        raise BadRequest("stan must be a string of 6 digits", code="invalid_stan")
    local_date = _local_date(data["local_time"], "local_time")

    pan = data.get("pan")
    if pan is not None and (not isinstance(pan, str) or not pan_well_formed(pan)):
        raise BadRequest("pan must be a string of 16 to 19 digits", code="invalid_pan")

    pin_block = None
    if "pin_block" in data:
        raw = data["pin_block"]
        if not isinstance(raw, str) or not _PIN_BLOCK_RE.fullmatch(raw):
            raise BadRequest(
                f"pin_block must be {2 * PIN_BLOCK_BYTES} hex characters (ISO 9564 format 4)",
                code="invalid_pin_block",
            )
        pin_block = bytes.fromhex(raw)

    amount = data.get("amount")
    if "amount" in data and not is_fen_amount(amount):
        raise BadRequest(
            "amount must be a non-negative integer number of fen", code="invalid_amount"
        )
    if "currency" in data and data["currency"] != CURRENCY:
        raise BadRequest(f"currency must be {CURRENCY!r}", code="invalid_currency")

    original_rrn = data.get("original_rrn")
    if "original_rrn" in data and (
        not isinstance(original_rrn, str) or not RRN_RE.fullmatch(original_rrn)
    ):
        raise BadRequest("original_rrn must be a string of 12 digits", code="invalid_rrn")
    original_stan = data.get("original_stan")
    if "original_stan" in data and (
        not isinstance(original_stan, str) or not STAN_RE.fullmatch(original_stan)
    ):
        raise BadRequest("original_stan must be a string of 6 digits", code="invalid_stan")

    original_local_date = (
        _local_date(data["original_local_time"], "original_local_time")
        if "original_local_time" in data
        else None
    )

    items, account_max = parse_items(data)

    content_hash = request_identity(
        txn_type=txn_type,
        pan=pan,
        amount=amount,
        original_rrn=original_rrn,
        original_stan=original_stan,
        items=items,
        account_max=account_max,
    )
    return TransactionRequest(
        txn_type=txn_type,
        stan=stan,
        local_date=local_date,
        pan=pan,
        pin_block=pin_block,
        amount=amount,
        content_hash=content_hash,
        original_rrn=original_rrn,
        original_stan=original_stan,
        original_local_date=original_local_date,
        items=items,
        account_max=account_max,
    )


MAX_ITEM_LINES = 100
ITEM_CODE_RE = re.compile(r"[0-9A-Za-z._-]{1,40}")
_ITEM_FIELDS = frozenset({"code", "quantity", "unit_price"})


def _is_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def parse_items(
    data: dict[str, Any],
) -> tuple[tuple[tuple[str, int, int], ...] | None, int | None]:
    """`items` and `account_max` of an itemised purchase or trial (DESIGN §10): 1 to 100
    lines of {code, quantity >= 1, unit_price >= 0 fen}, integers only; anything else is
    malformed. Self-contained so a typed-struct parser can take it over whole."""
    account_max = data.get("account_max")
    if "account_max" in data and not is_fen_amount(account_max):
        raise BadRequest(
            "account_max must be a non-negative integer number of fen", code="invalid_amount"
        )
    if "items" not in data:
        return None, account_max
    raw = data["items"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ITEM_LINES:
        raise BadRequest(
            f"items must be a list of 1 to {MAX_ITEM_LINES} lines", code="invalid_items"
        )
    items = []
    for n, line in enumerate(raw, start=1):
        if (
            not isinstance(line, dict)
            or line.keys() != _ITEM_FIELDS
            or not isinstance(line["code"], str)
            or not ITEM_CODE_RE.fullmatch(line["code"])
            or not _is_int(line["quantity"], 1, 1_000_000)
            or not is_fen_amount(line["unit_price"])
        ):
            raise BadRequest(
                f"items line {n} must be {{code, quantity >= 1, unit_price >= 0}} (integers)",
                code="invalid_items",
            )
        items.append((line["code"], line["quantity"], line["unit_price"]))
    return tuple(items), account_max


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
    return value.strip()


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
    data = parse_json_object(body)
    only_fields(data, {"batch_no", "purchases", "refunds"})
    batch_no = data.get("batch_no")
    if type(batch_no) is not int or not 0 < batch_no < 2**31:
        raise BadRequest("batch_no must be a positive integer", code="invalid_batch_no")
    figures: dict[str, Any] = {}
    for name in ("purchases", "refunds"):
        part = data.get(name)
        if not isinstance(part, dict) or set(part) != {"count", "amount"}:
            raise BadRequest(f"{name} must be {{count, amount}}", code="invalid_figures")
        count = part["count"]
        if type(count) is not int or not 0 <= count < 2**31 or not is_fen_amount(part["amount"]):
            raise BadRequest(
                f"{name}.count and {name}.amount must be non-negative integers",
                code="invalid_figures",
            )
        figures[name] = {"count": count, "amount": part["amount"]}
    digest = hashlib.sha256(json.dumps([batch_no, figures], sort_keys=True).encode()).digest()
    return batch_no, figures, digest


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
