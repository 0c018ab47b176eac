"""Operator and cardholder request bodies as typed structs (msgspec): one declaration is
the validation and the OpenAPI schema (body= of @operation); answers are in
http/answers.py. Bodies are closed: an unknown field is 400. Which code a refusal
carries is http/errors.py's rule.

A new body: a `Body` subclass here (fields with the types below), read in the handler
with `await parse_body(request, TheBody)` and named in `@operation(body=TheBody)`; a
field that needs its own error code gets an entry in BODY_ERRORS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web
from msgspec import Meta

from pos_gateway.errors import InvalidInput
from pos_gateway.http.messages import Fen, Pan, decode
from pos_gateway.http.validation import MAX_YEAR, MIN_YEAR  # the years a date may have

Password = Annotated[
    str,
    Meta(min_length=1, max_length=64, pattern="^[ -~]*$", description="printable ASCII"),
]
Ssn = Annotated[
    str,
    Meta(max_length=40, description="citizen ID number (GB 11643); the service checks it"),
]
Pin = Annotated[str, Meta(min_length=4, max_length=12, pattern="^[0-9]{4,12}$")]
# Free text: trimmed, not blank, no NUL (parse_body sees to what a type cannot say).
_TEXT = r"\S"


PersonName = Annotated[str, Meta(min_length=1, max_length=100, pattern=_TEXT)]
Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=_TEXT)]
Reason = Annotated[str, Meta(min_length=1, max_length=500, pattern=_TEXT)]
MerchantKind = Annotated[str, Meta(min_length=1, max_length=20, pattern=_TEXT)]
MerchantId = Annotated[str, Meta(min_length=1, max_length=15, pattern=_TEXT)]
EmployerId = Annotated[str, Meta(min_length=1, max_length=18, pattern=_TEXT)]


# The pattern spells MIN_YEAR..MAX_YEAR (1900-2999) and months 01-12.
Month = Annotated[
    str,
    Meta(
        pattern="^(19[0-9]{2}|2[0-9]{3})-(0[1-9]|1[0-2])$",
        min_length=7,
        max_length=7,
        description="YYYY-MM",
    ),
]
TerminalId = Annotated[str, Meta(pattern="^[0-9A-Z]{8}$", min_length=8, max_length=8)]

_PRINTABLE = "must be 1 to 64 printable ASCII characters"
_DIGITS = "must be a string of 4 to 12 digits"
# field -> (code, message) when its value has the wrong type or shape.
BODY_ERRORS: dict[str, tuple[str, str]] = {
    "ssn": ("invalid_ssn", "ssn must be a citizen ID number (a string)"),
    "password": ("invalid_password", f"password {_PRINTABLE}"),
    "old_password": ("invalid_password", f"old_password {_PRINTABLE}"),
    "new_password": ("invalid_password", f"new_password {_PRINTABLE}"),
    "old_pin": ("invalid_pin", f"old_pin {_DIGITS}"),
    "new_pin": ("invalid_pin", f"new_pin {_DIGITS}"),
    "pin": ("invalid_pin", f"pin {_DIGITS}"),
    "pan": ("invalid_pan", "pan must be a string of 16 to 19 digits"),
    "terminal_id": ("malformed_request", "terminal_id must be 8 characters [0-9A-Z]"),
    **{
        name: ("malformed_request", f"{name} must be a non-negative integer number of fen")
        for name in ("opening_allocation", "employer_part", "individual_part")
    },
    **{
        name: (
            "malformed_request",
            f"{name} must be a month YYYY-MM between {MIN_YEAR} and {MAX_YEAR}",
        )
        for name in ("month", "from_month")
    },
}


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A closed request body."""


# decode()'s codes for a field missing or unknown: the terminal's (http/errors.py).
_TERMINAL_SHAPE_CODES = frozenset({"missing_field", "unexpected_field"})


class Login(Body):
    ssn: Ssn
    password: Password


class PasswordChange(Body):
    old_password: Password
    new_password: Password


class PinChange(Body):
    old_pin: Pin
    new_pin: Pin


def as_month(month: str) -> date:
    """A Month field as the first day of its month."""
    return date(int(month[:4]), int(month[5:]), 1)


# Operator bodies (/v1/admin) ------------------------------------------------------------


class PersonRegistration(Body):
    ssn: Ssn
    name: PersonName
    opening_allocation: Fen = 0


class ContributionRecord(Body):
    month: Month
    employer_part: Fen = 0
    individual_part: Fen = 0


class ContributionCorrection(Body):
    employer_part: Fen
    individual_part: Fen
    reason: Reason


class CardIssue(Body):
    ssn: Ssn
    pin: Pin | None = None  # generated when not given
    pan: Pan | None = None  # drawn when not given
    expires_on: date | None = None


class PinReset(Body):
    ssn: Ssn
    new_pin: Pin


class CardReplacement(Body):
    ssn: Ssn
    pin: Pin | None = None


class MerchantRegistration(Body):
    name: Name
    kind: MerchantKind
    designated_from: date
    designated_until: date
    merchant_id: MerchantId | None = None


class DesignationRenewal(Body):
    designated_until: date
    designated_from: date | None = None


class TerminalRegistration(Body):
    merchant_id: MerchantId
    terminal_id: TerminalId | None = None


class EmployerRegistration(Body):
    name: Name
    employer_id: EmployerId | None = None  # generated when not given


class EmploymentRegistration(Body):
    """Without employer_id, flexible employment."""

    ssn: Ssn
    hired_on: date
    employer_id: EmployerId | None = None


class EmploymentEnd(Body):
    ended_on: date


class FromMonth(Body):
    """A suspension declared, or insurance resumed, from a month on."""

    from_month: Month


class CounterPasswordReset(Body):
    pan: Pan


class AllocationRun(Body):
    month: Month


# Cardholder bodies (/v1/me) -------------------------------------------------------------


class FlexibleEmployment(Body):
    started_on: date


B = TypeVar("B", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class _Reader:
    decoder: msgspec.json.Decoder[Any]
    errors: dict[str, tuple[str, str]]
    texts: tuple[str, ...]
    dates: tuple[str, ...]


_readers: dict[type[Any], _Reader] = {}


def _reader(kind: type[Any]) -> _Reader:
    errors: dict[str, tuple[str, str]] = {}
    texts, dates = [], []
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        shape = field.type
        if isinstance(shape, msgspec.inspect.UnionType):  # X | None
            shape = shape.types[0]
        if isinstance(shape, msgspec.inspect.StrType) and shape.pattern == _TEXT:
            texts.append(field.name)
            errors[field.name] = (
                "malformed_request",
                f"{field.name} must be a non-empty string of at most {shape.max_length} characters",
            )
        elif isinstance(shape, msgspec.inspect.DateType):
            dates.append(field.name)
            errors[field.name] = ("malformed_request", _date_problem(field.name))
    return _Reader(
        msgspec.json.Decoder(kind), {**BODY_ERRORS, **errors}, tuple(texts), tuple(dates)
    )


def _date_problem(name: str) -> str:
    return f"{name} must be a date YYYY-MM-DD between {MIN_YEAR} and {MAX_YEAR}"


async def parse_body(request: web.Request, kind: type[B]) -> B:
    """The request's JSON body as `kind`, or 400 naming the field at fault."""
    reader = _readers.get(kind)
    if reader is None:
        reader = _readers[kind] = _reader(kind)
    raw = await request.read()
    try:
        parsed: B = decode(reader.decoder, raw, reader.errors)
    except InvalidInput as refused:
        if refused.code == "invalid_json" and _lone_surrogate(raw):
            raise _unstorable("text") from None
        if refused.code in _TERMINAL_SHAPE_CODES:
            raise InvalidInput(refused.message) from None
        raise
    for name in reader.texts:
        value = getattr(parsed, name)
        if value is not None:
            if "\x00" in value:
                raise _unstorable(name)
            setattr(parsed, name, value.strip())
    for name in reader.dates:
        day = getattr(parsed, name)
        if day is not None and not MIN_YEAR <= day.year <= MAX_YEAR:
            raise InvalidInput(_date_problem(name))
    return parsed


def _unstorable(name: str) -> InvalidInput:
    # PostgreSQL stores neither NUL nor a lone surrogate (not UTF-8).
    return InvalidInput(f"{name} must not contain NUL or unpaired surrogates", code="invalid_text")


def _lone_surrogate(raw: bytes) -> bool:
    """Valid JSON that msgspec refused because a string holds an unpaired surrogate."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False
