"""The terminal's messages as typed structs (msgspec): the validation, the OpenAPI schema
and the shape of the stored request identity, declared once.

A new terminal request field is one attribute on the struct(s) of the types that carry it
(plus its entry in FIELD_ERRORS when it needs its own error code); a new request type is
one struct with its `tag` added to TerminalRequest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from pos_gateway.domain.cards import pan_well_formed
from pos_gateway.domain.identity import request_identity
from pos_gateway.domain.money import CURRENCY, MAX_FEN
from pos_gateway.errors import InvalidInput
from pos_gateway.security.pins import PIN_BLOCK_BYTES

# Patterns are JSON Schema (ECMA) patterns and re.search patterns at once; '$' also
# matches before a final newline in Python, so every field is bounded in length as well
# and the PAN (variable length) is checked again with fullmatch.
Stan = Annotated[str, Meta(pattern="^[0-9]{6}$", min_length=6, max_length=6)]
Rrn = Annotated[str, Meta(pattern="^[0-9]{12}$", min_length=12, max_length=12)]
Pan = Annotated[str, Meta(pattern="^[0-9]{16,19}$", min_length=16, max_length=19)]
PinBlock = Annotated[
    str,
    Meta(
        pattern=f"^[0-9a-fA-F]{{{2 * PIN_BLOCK_BYTES}}}$",
        min_length=2 * PIN_BLOCK_BYTES,
        max_length=2 * PIN_BLOCK_BYTES,
        description="ISO 9564 format 4 PIN block, enciphered under the terminal's PIN key",
    ),
]
Fen = Annotated[int, Meta(ge=0, le=MAX_FEN, description="amount in fen (1 CNY = 100 fen)")]
Currency = Literal["CNY"]
LocalTime = Annotated[
    str, Meta(max_length=40, description="ISO 8601 local time with its UTC offset")
]
BatchNo = Annotated[int, Meta(gt=0, lt=2**31)]
Count = Annotated[int, Meta(ge=0, lt=2**31)]

_STRICT: dict[str, Any] = {"tag_field": "type", "forbid_unknown_fields": True, "kw_only": True}


class _Request(msgspec.Struct, **_STRICT):
    stan: Stan
    local_time: LocalTime


ItemCode = Annotated[str, Meta(pattern="^[0-9A-Za-z._-]{1,40}$", min_length=1, max_length=40)]
MAX_ITEM_LINES = 100


class Item(msgspec.Struct, forbid_unknown_fields=True):
    """One line of an itemised purchase or trial (DESIGN §10)."""

    code: ItemCode
    quantity: Annotated[int, Meta(ge=1, le=1_000_000)]
    unit_price: Fen


Items = Annotated[
    list[Item],
    Meta(
        min_length=1,
        max_length=MAX_ITEM_LINES,
        description="the itemised lines, in the order sent (DESIGN §10)",
    ),
]
AccountMax = Annotated[
    int, Meta(ge=0, le=MAX_FEN, description="the most the individual account pays, in fen")
]


class Purchase(_Request, tag="purchase"):
    pan: Pan
    pin_block: PinBlock
    amount: Fen
    currency: Currency
    items: Items | UnsetType = UNSET
    account_max: AccountMax | UnsetType = UNSET


class SettlementTrial(_Request, tag="settlement_trial"):
    """DESIGN §10: the split of an itemised purchase, answered and moving nothing. A PIN
    sent along is checked and counted like any PIN."""

    pan: Pan
    amount: Fen
    currency: Currency
    items: Items
    pin_block: PinBlock | UnsetType = UNSET
    account_max: AccountMax | UnsetType = UNSET


class BalanceInquiry(_Request, tag="balance_inquiry"):
    pan: Pan
    pin_block: PinBlock
    currency: Currency | UnsetType = UNSET


class _CardDebit(_Request):
    """The shape of the kinds the gateway declines 57 (cash withdrawal, transfer)."""

    pan: Pan
    amount: Fen
    currency: Currency
    pin_block: PinBlock | UnsetType = UNSET


class CashWithdrawal(_CardDebit, tag="cash_withdrawal"):
    pass


class Transfer(_CardDebit, tag="transfer"):
    pass


class Refund(_Request, tag="refund"):
    original_rrn: Rrn
    amount: Fen
    currency: Currency
    pan: Pan | UnsetType = UNSET


class Reversal(_Request, tag="reversal"):
    """The original's amount and card may be sent along; the gateway reverses what it
    recorded, not what the reversal claims. original_local_time (ISO 8583 field 90 in
    spirit) pins the original's date; without it the original is looked for on the
    reversal's date and the day before."""

    original_stan: Stan
    pan: Pan | UnsetType = UNSET
    amount: Fen | UnsetType = UNSET
    currency: Currency | UnsetType = UNSET
    original_local_time: LocalTime | UnsetType = UNSET


TerminalRequest = (
    Purchase | SettlementTrial | BalanceInquiry | CashWithdrawal | Transfer | Refund | Reversal
)
TRANSACTION_TYPES = tuple(
    t.__struct_config__.tag for t in (Purchase, SettlementTrial, BalanceInquiry,
                                      CashWithdrawal, Transfer, Refund, Reversal)
)  # fmt: skip


class Figures(msgspec.Struct, forbid_unknown_fields=True):
    count: Count
    amount: Fen


class BatchClose(msgspec.Struct, forbid_unknown_fields=True):
    batch_no: BatchNo
    purchases: Figures
    refunds: Figures


ResponseCode = Annotated[str, Meta(pattern="^[0-9]{2}$", min_length=2, max_length=2)]


class SplitAnswer(msgspec.Struct, kw_only=True):
    """How an approved itemised purchase or trial is paid (DESIGN §10)."""

    total: Fen
    eligible: Fen
    deductible_applied: Fen
    fund: Fen
    account: Fen
    cash: Fen
    covered: bool


class TransactionAnswer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer to every financial request. An answer with no transaction behind it
    (91, 94, 96) has no rrn, amount, balance or transaction_id."""

    response_code: ResponseCode
    approved: bool
    message: str
    stan: str | UnsetType = UNSET
    rrn: str | UnsetType = UNSET
    auth_code: str | UnsetType = UNSET
    amount: Fen | UnsetType = UNSET
    balance: Fen | UnsetType = UNSET
    transaction_id: str | UnsetType = UNSET
    split: SplitAnswer | UnsetType = UNSET


class Totals(msgspec.Struct, forbid_unknown_fields=True):
    purchases: Figures
    refunds: Figures


class BatchCloseAnswer(msgspec.Struct, forbid_unknown_fields=True):
    batch_no: BatchNo
    in_balance: bool
    gateway: Totals
    terminal: Totals
    next_batch_no: BatchNo


class OpenBatch(msgspec.Struct, forbid_unknown_fields=True):
    batch_no: BatchNo


# field -> (code, message) for a value of the wrong type or shape: the terminal's error
# codes, unchanged by the move to typed messages (the rule: http/errors.py).
FIELD_ERRORS: dict[str, tuple[str, str]] = {
    "type": ("missing_field", "type is required and must be a string"),
    "stan": ("invalid_stan", "stan must be a string of 6 digits"),
    "original_stan": ("invalid_stan", "original_stan must be a string of 6 digits"),
    "local_time": ("invalid_local_time", "local_time must be an ISO 8601 string"),
    "original_local_time": (
        "invalid_local_time",
        "original_local_time must be an ISO 8601 string",
    ),
    "pan": ("invalid_pan", "pan must be a string of 16 to 19 digits"),
    "pin_block": (
        "invalid_pin_block",
        f"pin_block must be {2 * PIN_BLOCK_BYTES} hex characters (ISO 9564 format 4)",
    ),
    "amount": ("invalid_amount", "amount must be a non-negative integer number of fen"),
    "currency": ("invalid_currency", f"currency must be {CURRENCY!r}"),
    "original_rrn": ("invalid_rrn", "original_rrn must be a string of 12 digits"),
    "items": (
        "invalid_items",
        f"items must be a list of 1 to {MAX_ITEM_LINES} lines of "
        "{code, quantity >= 1, unit_price >= 0} (integers)",
    ),
    "account_max": (
        "invalid_amount",
        "account_max must be a non-negative integer number of fen",
    ),
    "batch_no": ("invalid_batch_no", "batch_no must be a positive integer"),
    "purchases": ("invalid_figures", "purchases must be {count, amount}"),
    "refunds": ("invalid_figures", "refunds must be {count, amount}"),
}
_FIELD_RE = re.compile(r"`\$\.([A-Za-z_]+)")
_NAMED_RE = re.compile(r"field `(.{0,40})")
_transaction_decoder = msgspec.json.Decoder(TerminalRequest)
_batch_decoder = msgspec.json.Decoder(BatchClose)


def decode(
    decoder: msgspec.json.Decoder[Any],
    body: bytes,
    errors: Mapping[str, tuple[str, str]] = FIELD_ERRORS,
) -> Any:
    """Decode `body` strictly, or raise InvalidInput with the code and message that
    `errors` gives the offending field (the terminal contract's by default)."""
    if not body:
        raise InvalidInput("request body is empty", code="invalid_json")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _refusal(str(exc), errors) from None
    # DecodeError: not JSON, not UTF-8, NaN, nested past msgspec's depth limit.
    except (msgspec.DecodeError, RecursionError):
        raise InvalidInput("request body is not valid JSON", code="invalid_json") from None


def _refusal(problem: str, errors: Mapping[str, tuple[str, str]]) -> InvalidInput:
    path = _FIELD_RE.search(problem)
    if path is not None:  # a value of the wrong type or shape, maybe inside an object
        field = path.group(1)
        if field == "type" and problem.startswith("Invalid value"):
            return InvalidInput("unknown transaction type", code="unknown_type")
        # msgspec's own words name the field and the expected type, never a value.
        code, message = errors.get(field, ("malformed_request", problem))
        return InvalidInput(message, code=code)
    named = _NAMED_RE.search(problem)
    field = named.group(1).rstrip("`") if named else "?"
    if problem.startswith("Object missing required field"):
        if field == "type":
            return InvalidInput("type is required and must be a string", code="missing_field")
        return InvalidInput(f"missing field(s): {field}", code="missing_field")
    if problem.startswith("Object contains unknown field"):
        return InvalidInput(f"unexpected field(s): {field}", code="unexpected_field")
    return InvalidInput("request body must be a JSON object", code="invalid_json")


def decode_transaction(body: bytes) -> TerminalRequest:
    request: TerminalRequest = decode(_transaction_decoder, body)
    pan = getattr(request, "pan", UNSET)
    if isinstance(pan, str) and not pan_well_formed(pan):
        code, message = FIELD_ERRORS["pan"]
        raise InvalidInput(message, code=code)
    return request


def decode_batch_close(body: bytes) -> BatchClose:
    close: BatchClose = decode(_batch_decoder, body)
    return close


def content_hash(request: TerminalRequest) -> bytes:
    """The stored request identity that decides replay vs. 94: domain.identity's, on the
    business fields only (the ISO 8583 transport takes the same), so a request sent by
    one transport and retransmitted by the other is one request."""
    items = getattr(request, "items", UNSET)
    return request_identity(
        txn_type=request.__struct_config__.tag,  # type: ignore[arg-type]
        pan=_given(getattr(request, "pan", UNSET)),
        amount=_given(getattr(request, "amount", UNSET)),
        original_rrn=_given(getattr(request, "original_rrn", UNSET)),
        original_stan=_given(getattr(request, "original_stan", UNSET)),
        items=None if items is UNSET else as_lines(items),
        account_max=_given(getattr(request, "account_max", UNSET)),
    )


def as_lines(items: list[Item]) -> tuple[tuple[str, int, int], ...]:
    """The lines as (code, quantity, unit price), in the order sent."""
    return tuple((item.code, item.quantity, item.unit_price) for item in items)


def _given(value: Any) -> Any:
    return None if value is UNSET else value
