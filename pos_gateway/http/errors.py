"""The one table from domain errors to HTTP statuses, and the JSON error object."""

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
