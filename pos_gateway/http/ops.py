"""Health and metrics for operators of the service."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pos_gateway.http.api import operation
from pos_gateway.http.schemas import STR, obj
from pos_gateway.http.state import METRICS, SERVICES
from pos_gateway.store.database import UNAVAILABLE_ERRORS

_HEALTH_TIMEOUT_S = 2.0


@operation(
    "200 once the database answers, 503 otherwise", "operations", ok=obj({"status": STR}), errors=()
)
async def healthz(request: web.Request) -> web.Response:
    """200 once the database answers, 503 otherwise (within two seconds either way)."""
    pool = request.app[SERVICES].pool
    try:
        async with asyncio.timeout(_HEALTH_TIMEOUT_S):
            await pool.fetchval("SELECT 1")
    except UNAVAILABLE_ERRORS:
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok"})


@operation(
    "Prometheus metrics", "operations", ok_content={"text/plain": {"schema": STR}}, errors=()
)
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
