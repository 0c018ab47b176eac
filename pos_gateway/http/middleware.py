"""Cross-cutting concerns: request id and log context, error mapping."""

from __future__ import annotations

import functools
import itertools
import re
import secrets
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from aiohttp import web
from asyncpg.exceptions._base import DataError as ArgumentDataError

from pos_gateway.errors import DomainError
from pos_gateway.http.errors import error_response, status_of
from pos_gateway.http.state import METRICS
from pos_gateway.services.health import database_unavailable

log = structlog.get_logger("pos_gateway.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


_request_numbers = itertools.count()


@functools.cache
def _process_tag() -> str:
    return secrets.token_hex(8)  # per process, so ids of several workers never meet


def _new_request_id() -> str:
    """32 hex characters as uuid4().hex was, without its system call per request: the id
    only ties a request's log lines together, it guards nothing."""
    return f"{_process_tag()}{next(_request_numbers):016x}"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    structlog.contextvars.clear_contextvars()
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID_RE.fullmatch(offered) else _new_request_id()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response = await handler(request)
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def error_mapping(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal is a JSON error object; nothing escapes as an HTML page or a bare 500."""
    metrics = request.config_dict[METRICS]
    try:
        return await handler(request)
    except DomainError as exc:
        status = status_of(exc)
        metrics.http_errors.labels(str(status), exc.code).inc()
        log.info("request_refused", status=status, code=exc.code, path=request.path)
        return error_response(status, exc.code, exc.message)
    # The DDL's invariants are the last line of defence behind validation. The constraint
    # names the schema, which is no client's business: it goes to the log only.
    except asyncpg.CheckViolationError as exc:
        log.info("constraint_refused", constraint=exc.constraint_name, path=request.path)
        metrics.http_errors.labels("400", "constraint_violation").inc()
        return error_response(400, "constraint_violation", "rejected by a rule of the ledger")
    except (asyncpg.ForeignKeyViolationError, asyncpg.UniqueViolationError) as exc:
        log.info("constraint_refused", constraint=exc.constraint_name, path=request.path)
        metrics.http_errors.labels("409", "conflict").inc()
        return error_response(409, "conflict", "conflicts with what is stored")
    except (asyncpg.DataError, ArgumentDataError, UnicodeError) as exc:
        # A value validation let through that the database cannot take (NUL, a lone
        # surrogate, a number past bigint): the client's input, so 400, never a 500.
        log.info("value_refused", error=type(exc).__name__, path=request.path)
        metrics.http_errors.labels("400", "invalid_value").inc()
        return error_response(400, "invalid_value", "a value is not valid text or is out of range")
    except web.HTTPRequestEntityTooLarge:
        metrics.http_errors.labels("413", "body_too_large").inc()
        return error_response(413, "body_too_large", "request body exceeds 16 KiB")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        metrics.http_errors.labels(str(exc.status), code).inc()
        return error_response(exc.status, code, exc.reason)
    except Exception as exc:
        if database_unavailable(exc):
            log.error("database_unavailable", error=type(exc).__name__, path=request.path)
            metrics.http_errors.labels("503", "database_unavailable").inc()
            return error_response(503, "database_unavailable", "database unavailable; retry later")
        log.exception("unhandled_error", path=request.path)
        metrics.http_errors.labels("500", "internal_error").inc()
        return error_response(500, "internal_error", "internal error; it has been logged")
