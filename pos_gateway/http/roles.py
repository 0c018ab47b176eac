"""Who may call what, decided by where a route is mounted rather than by a decorator on
each handler: the operator API (/v1/admin) and the cardholder API (/v1/me) are aiohttp
sub-applications, each with its own authentication middleware, so a route added to either
cannot be left open by forgetting something.

A new operator route is one `@routes.get/post("/v1/admin/…")` in a module whose
RouteTableDef is in OPERATOR_ROUTES of app.py; a new cardholder route likewise under
"/v1/me/…". Cardholder routes that need no session or allow the first password are listed
in CARDHOLDER_PUBLIC / BEFORE_PASSWORD_CHANGE below; everything else needs a full session.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator

from aiohttp import web
from aiohttp.abc import AbstractView
from aiohttp.typedefs import Middleware

from pos_gateway.errors import NotAuthenticated, NotPermitted
from pos_gateway.http.insurance_state import INSURANCE
from pos_gateway.http.state import SETTINGS
from pos_gateway.services.cardholder import Session

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION = web.RequestKey("cardholder_session", Session)
OPERATOR_PREFIX = "/v1/admin"
CARDHOLDER_PREFIX = "/v1/me"
# (method, path) of the cardholder API that need no session, and those a session opened
# with the first password may use.
CARDHOLDER_PUBLIC = frozenset({("POST", "/v1/me/login")})
BEFORE_PASSWORD_CHANGE = frozenset({("POST", "/v1/me/password"), ("POST", "/v1/me/logout")})
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def _route_key(request: web.Request) -> tuple[str, str]:
    resource = request.match_info.route.resource
    return request.method, resource.canonical if resource is not None else request.path


@web.middleware
async def operator_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every operator route requires `Authorization: Bearer <POS_ADMIN_TOKEN>`."""
    expected = f"Bearer {request.config_dict[SETTINGS].secrets.admin_token}"
    offered = request.headers.get("Authorization", "")
    # surrogateescape: header bytes that are not UTF-8 compare as bytes (and differ).
    if not hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), expected.encode()):
        raise NotAuthenticated("operator token missing or wrong")
    return await handler(request)


@web.middleware
async def cardholder_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A live session's bearer token; until the first password is changed, only the
    routes in BEFORE_PASSWORD_CHANGE."""
    route = _route_key(request)
    if route in CARDHOLDER_PUBLIC:
        return await handler(request)
    offered = request.headers.get("Authorization", "")
    scheme, _, token = offered.partition(" ")
    if scheme != "Bearer" or not _TOKEN_RE.fullmatch(token):
        raise NotAuthenticated("bearer token missing or malformed", code="no_session")
    session = await request.config_dict[INSURANCE].cardholder.authenticate(token)
    if session.password_change_required and route not in BEFORE_PASSWORD_CHANGE:
        raise NotPermitted(
            "change the first password before anything else (POST /v1/me/password)",
            code="password_change_required",
        )
    request[SESSION] = session
    return await handler(request)


def sub_application(
    prefix: str,
    middleware: Middleware,
    route_tables: Iterable[web.RouteTableDef],
    client_max_size: int,
) -> web.Application:
    """A sub-application for `prefix` holding the routes of `route_tables` (declared with
    their full paths, so they read as the URL a client calls)."""
    sub = web.Application(middlewares=[middleware], client_max_size=client_max_size)
    for table in route_tables:
        for route in table:
            assert isinstance(route, web.RouteDef), route
            if route.path != prefix and not route.path.startswith(prefix + "/"):
                raise ValueError(f"{route.method} {route.path} is not under {prefix}")
            sub.router.add_route(
                route.method, route.path.removeprefix(prefix), route.handler, **route.kwargs
            )
    return sub


def all_routes(
    app: web.Application,
) -> Iterator[tuple[str, str, Handler | type[AbstractView]]]:
    """(method, path, handler) of every route of `app` and its sub-applications, with the
    full path a client calls; aiohttp's HEAD twins of GET routes are left out."""
    for resource in app.router.resources():
        sub = resource.get_info().get("app")
        if isinstance(sub, web.Application):
            yield from all_routes(sub)
            continue
        for route in resource:
            if route.method != "HEAD":
                yield route.method, resource.canonical, route.handler
