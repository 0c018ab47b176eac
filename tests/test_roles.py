"""Roles by sub-application (http/roles.py): every route of the application, outside an
explicit public list, refuses a call without credentials, so a route added anywhere
cannot be left open by a forgotten check."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from pos_gateway.http.roles import all_routes

# (method, path) callable without credentials; everything else must answer 401.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/me/login"),
}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_every_route_outside_the_public_list_refuses_an_unauthenticated_call(
    client: TestClient,
) -> None:
    routes = {(method, path) for method, path, _ in all_routes(client.server.app)}
    assert PUBLIC <= routes, "a public route is gone: update PUBLIC"
    guarded = sorted(routes - PUBLIC)
    assert len(guarded) > 40  # the walk sees the sub-applications' routes too
    assert ("POST", "/v1/admin/people") in guarded and ("GET", "/v1/me") in guarded
    open_routes = []
    for method, path in guarded:
        resp = await client.request(method, _concrete(path), data=b"{}")
        body = await resp.json()
        if resp.status != 401 or "error" not in body:
            open_routes.append((method, path, resp.status))
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
