"""Cache-Control: no answer that can carry tokens, keys, PINs or personal data is stored by
a browser or a proxy. Decided by path in this one place, for the JSON APIs, the terminal
protocol and the pages alike: everything is `no-store` except the few public, data-free
paths below."""

from __future__ import annotations

from aiohttp import web

from pos_gateway.http.middleware import Handler

# Answers with nothing private in them (health, metrics, the API description).
CACHEABLE_PATHS = frozenset({"/healthz", "/metrics", "/v1/openapi.json"})
# The pages' static files (the stylesheet): the same for everyone; their handlers say
# how long they keep.
STATIC_PREFIX = "/assets/"


def is_private(path: str) -> bool:
    return path not in CACHEABLE_PATHS and not path.startswith(STATIC_PREFIX)


@web.middleware
async def no_store(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # answered by aiohttp itself (404, 405, redirects)
        if is_private(request.path):
            exc.headers["Cache-Control"] = "no-store"
        raise
    if is_private(request.path):
        response.headers["Cache-Control"] = "no-store"
    return response
