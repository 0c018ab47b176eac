"""Roles by sub-application (http/roles.py): every route of the application, outside an
explicit public list, refuses a call without credentials, so a route added anywhere
cannot be left open by a forgotten check."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient

from pos_gateway.http.roles import all_routes
from pos_gateway.web import office

# (method, path) callable without credentials; everything else must be refused (401, or
# for a web page a redirect to its login page).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/me/login"),
    # Web pages (pos_gateway/web): the login pages and the stylesheet they need.
    ("GET", "/"),  # the cardholder's login page (home once logged in)
    ("POST", "/login"),  # the cardholder's login form
    ("GET", "/assets/pages.css"),  # the stylesheet, the same for everyone
    ("GET", "/office/"),  # the office login page (home once logged in)
    ("POST", "/office/login"),  # the office login form
}
# The login page a page's refusal sends a browser to (the HTML pages answer a GET without
# a session with a redirect there, a POST with 401 in words); /v1 routes answer 401 JSON.
_OFFICE = "/office/"


def _login_page(path: str) -> str | None:
    if path.startswith("/v1/") or path in ("/healthz", "/metrics"):
        return None
    return _OFFICE if path.startswith(_OFFICE) else "/"


async def _refused(client: TestClient, method: str, path: str) -> bool:
    """401 (a JSON error for the API, a page in words for a form post), or for a page a
    redirect to its login page: a refusal either way."""
    resp = await client.request(method, _concrete(path), data=b"{}", allow_redirects=False)
    login = _login_page(path)
    if login is None:
        return resp.status == 401 and "error" in await resp.json()
    if resp.status in (302, 303):
        return resp.headers.get("Location") == login
    return resp.status == 401 and resp.content_type == "text/html"


def _declared_paths() -> dict[str, str]:
    """Office paths as declared, with their choices ({action:freeze|unfreeze}), by the
    canonical path the walk gives (which drops the choices)."""
    declared = {}
    for route in office.routes:
        assert isinstance(route, web.RouteDef)
        path = office.COOKIE_PATH.rstrip("/") + route.path
        declared[re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)] = path
    return declared


_DECLARED = _declared_paths()


def _concrete(path: str) -> str:
    path = _DECLARED.get(path, path)
    path = re.sub(r"\{\w+:([^|}]+)[^}]*\}", r"\1", path)  # the first of the choices
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_every_route_outside_the_public_list_refuses_an_unauthenticated_call(
    client: TestClient,
) -> None:
    routes = {(method, path) for method, path, _ in all_routes(client.server.app)}
    assert PUBLIC <= routes, "a public route is gone: update PUBLIC"
    guarded = sorted(routes - PUBLIC)
    assert len(guarded) > 40  # the walk sees the sub-applications' routes too
    assert ("POST", "/v1/admin/people") in guarded and ("GET", "/v1/me") in guarded
    assert ("GET", "/statement") in guarded and ("GET", "/office/people") in guarded
    open_routes = [(m, p) for m, p in guarded if not await _refused(client, m, p)]
    assert open_routes == []


async def test_a_wrong_operator_token_is_refused_on_every_operator_route(
    client: TestClient,
) -> None:
    operator_routes = [
        (method, path)
        for method, path, _ in all_routes(client.server.app)
        if path.startswith("/v1/admin/")
    ]
    assert operator_routes
    for method, path in operator_routes:
        resp = await client.request(
            method, _concrete(path), headers={"Authorization": "Bearer not-the-token"}
        )
        assert resp.status == 401, (method, path)
