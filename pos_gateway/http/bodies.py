"""Operator and cardholder request bodies and answers as typed structs (msgspec): one
declaration is the validation, the OpenAPI schema (body=/ok= of @operation) and the
rendering. Bodies are closed: an unknown field is 400 unexpected_field.

A new body: a `Body` subclass here (fields with the types below), read in the handler
with `await parse_body(request, TheBody)` and named in `@operation(body=TheBody)`; a
field that needs its own error code gets an entry in BODY_ERRORS.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from aiohttp import web
from msgspec import Meta

from pos_gateway.http.messages import decode

Password = Annotated[
    str,
    Meta(min_length=1, max_length=64, pattern="^[ -~]*$", description="printable ASCII"),
]
Ssn = Annotated[
    str,
    Meta(max_length=40, description="citizen ID number (GB 11643); the service checks it"),
]
Pin = Annotated[str, Meta(min_length=4, max_length=12, pattern="^[0-9]{4,12}$")]

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
}


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A closed request body."""


class Answer(msgspec.Struct, kw_only=True):
    """An answer, rendered by `respond`."""


class Login(Body):
    ssn: Ssn
    password: Password


class LoginAnswer(Answer):
    token: str
    expires_in: int
    must_change_password: bool
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme's name)


class PasswordChange(Body):
    old_password: Password
    new_password: Password


class PinChange(Body):
    old_pin: Pin
    new_pin: Pin


B = TypeVar("B", bound=msgspec.Struct)
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


async def parse_body(request: web.Request, kind: type[B]) -> B:
    """The request's JSON body as `kind`, or 400 naming the field at fault."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    parsed: B = decode(decoder, await request.read(), BODY_ERRORS)
    return parsed


def respond(answer: msgspec.Struct, *, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(answer), status=status, content_type="application/json"
    )
