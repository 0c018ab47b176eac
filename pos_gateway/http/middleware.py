"""Cross-cutting concerns: request id and log context, error mapping."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from aiohttp import web

from pos_gateway.errors import ApiError
from pos_gateway.http.state import METRICS
from pos_gateway.services.health import UNAVAILABLE_ERRORS

log = structlog.get_logger("pos_gateway.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    structlog.contextvars.clear_contextvars()
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID_RE.fullmatch(offered) else uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response = await handler(request)
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def error_mapping(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal is a JSON error object; nothing escapes as an HTML page or a bare 500."""
    metrics = request.app[METRICS]
    try:
        return await handler(request)
    except ApiError as exc:
        metrics.http_errors.labels(str(exc.status), exc.code).inc()
        log.info("request_refused", status=exc.status, code=exc.code, path=request.path)
        return error_response(exc.status, exc.code, exc.message)
    except asyncpg.CheckViolationError as exc:
        # The DDL's invariants are the last line of defence behind validation.
        metrics.http_errors.labels("400", "constraint_violation").inc()
        return error_response(400, "constraint_violation", f"rejected by {exc.constraint_name}")
    except (asyncpg.ForeignKeyViolationError, asyncpg.UniqueViolationError) as exc:
        metrics.http_errors.labels("409", "conflict").inc()
        return error_response(409, "conflict", f"conflicts with {exc.constraint_name}")
    except UNAVAILABLE_ERRORS as exc:
        log.error("database_unavailable", error=type(exc).__name__, path=request.path)
        metrics.http_errors.labels("503", "database_unavailable").inc()
        return error_response(503, "database_unavailable", "database unavailable; retry later")
    except web.HTTPRequestEntityTooLarge:
        metrics.http_errors.labels("413", "body_too_large").inc()
        return error_response(413, "body_too_large", "request body exceeds 16 KiB")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        metrics.http_errors.labels(str(exc.status), code).inc()
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("unhandled_error", path=request.path)
        metrics.http_errors.labels("500", "internal_error").inc()
        return error_response(500, "internal_error", "internal error; it has been logged")
