"""Health and metrics for operators of the service."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pos_gateway.http.api import operation
from pos_gateway.http.schemas import STR, obj
from pos_gateway.http.state import METRICS, SERVICES
from pos_gateway.services.health import database_reachable

# Below a second: a database that went silent (no RST) shows as 503 within one.
_HEALTH_TIMEOUT_S = 0.8


@operation(
    "200 once the database answers, 503 otherwise", "operations", ok=obj({"status": STR}), errors=()
)
async def healthz(request: web.Request) -> web.Response:
    """200 once the database answers, 503 otherwise (within a second either way)."""
    if not await database_reachable(request.app[SERVICES].pool, _HEALTH_TIMEOUT_S):
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok"})


@operation(
    "Prometheus metrics", "operations", ok_content={"text/plain": {"schema": STR}}, errors=()
)
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
