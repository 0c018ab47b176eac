"""Who is calling, for the audit trail: the operator (named by the optional
X-Operator-Id header of the counter application) or the cardholder, and from where."""

from __future__ import annotations

import re

import structlog
from aiohttp import web

from pos_gateway.domain.audit import CARDHOLDER, OPERATOR, Actor
from pos_gateway.errors import InvalidInput

OPERATOR_ID_RE = re.compile(r"[A-Za-z0-9._@-]{1,64}")
DEFAULT_OPERATOR = "admin-token"


def _request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def operator_actor(request: web.Request) -> Actor:
    name = request.headers.get("X-Operator-Id", DEFAULT_OPERATOR)
    if not OPERATOR_ID_RE.fullmatch(name):
        raise InvalidInput("X-Operator-Id must be 1-64 characters [A-Za-z0-9._@-]")
    return Actor(OPERATOR, name, request.remote, _request_id())


def cardholder_actor(request: web.Request, ssn: str) -> Actor:
    return Actor(CARDHOLDER, ssn, request.remote, _request_id())
