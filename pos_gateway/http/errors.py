"""The one table from domain errors to HTTP statuses, and the JSON error object.

Which code a malformed request gets (400; DESIGN §4 makes the status and the shape
`{"error": {"code", "message"}}` contract, not the codes), one rule per API:

- Terminal requests (DESIGN §4, §9; http/messages.py FIELD_ERRORS): the code says what
  is wrong where: `missing_field`, `unexpected_field`, `unknown_type`, `invalid_json`,
  and `invalid_<field>` (`invalid_pan`, `invalid_amount`, ...) for a bad value.
  Terminals were built against these: they stay as they are.
- Operator (/v1/admin) and cardholder (/v1/me) requests, bodies, queries and paths alike:
  `malformed_request` for any shape problem (a field missing, unknown or of the wrong
  type or form), `invalid_json` for a body that is not JSON, and a code of its own only
  for the fields that have one (http/bodies.py BODY_ERRORS: `invalid_ssn`,
  `invalid_password`, `invalid_pin`, `invalid_pan`), for text the database cannot
  store (`invalid_text`) and for rules past the shape (`weak_password`, ...).
"""

from __future__ import annotations

from aiohttp import web

from pos_gateway.errors import (
    ConflictsWithRecord,
    DomainError,
    InvalidInput,
    NoSuchRecord,
    NotAuthenticated,
    NotPermitted,
)

STATUS_BY_KIND: dict[type[DomainError], int] = {
    InvalidInput: 400,
    NotAuthenticated: 401,
    NotPermitted: 403,
    NoSuchRecord: 404,
    ConflictsWithRecord: 409,
}
# Codes whose status differs from their kind's (none today): the place to say so.
STATUS_BY_CODE: dict[str, int] = {}


def status_of(error: DomainError) -> int:
    if error.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[error.code]
    for kind in type(error).__mro__:
        if kind in STATUS_BY_KIND:
            return STATUS_BY_KIND[kind]
    return 400


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
