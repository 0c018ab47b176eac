"""GET /v1/openapi.json describes the server as it is: the same routes, request bodies the
server holds to, and answers that match the documented schemas."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from pos_gateway.http.openapi import document

from .conftest import World
from .helpers import new_ssn
from .insurance_helpers import (
    NEW_PASSWORD,
    bearer,
    business_today,
    cardholder,
    login,
    own_past_month,
    ym,
)

pytestmark = pytest.mark.usefixtures("ledger_clean")

DOC = document()
_METHODS = {"get", "post", "put", "patch", "delete"}


def _app_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # added by aiohttp for every GET
            continue
        if hasattr(route.handler, "page_access") or route.resource.canonical.startswith("/office/"):
            continue  # HTML pages (DESIGN §11, pos_gateway/web), not the JSON API
        routes.add((route.method, route.resource.canonical))
    return routes


def _doc_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method in item
        if method in _METHODS
    }


async def test_every_route_is_documented_and_every_documented_route_exists(
    client, world: World
) -> None:
    served = await (await client.get("/v1/openapi.json")).json()
    app_routes = _app_routes(client.server.app)

    assert served == DOC
    assert app_routes - _doc_routes() == set(), "routes missing from the OpenAPI document"
    assert _doc_routes() - app_routes == set(), "documented routes the server does not have"


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = DOC["components"]["schemas"][name]
    return schema


def _walk(value: Any):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_the_document_is_well_formed() -> None:
    assert DOC["openapi"].startswith("3.")
    schemes = set(DOC["components"]["securitySchemes"])
    for node in _walk(DOC):
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/components/schemas/")
            assert name in DOC["components"]["schemas"], node["$ref"]
    for path, item in DOC["paths"].items():
        names = set(re.findall(r"{([a-z_]+)}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)
            assert operation["responses"], (method, path)
            for requirement in operation["security"]:
                assert set(requirement) <= schemes


# A small JSON Schema checker: the subset the document uses ----------------------------------

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return type(value) is int
    if name == "number":
        return type(value) in (int, float)
    return isinstance(value, _TYPES[name])


def conforms(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    schema = _resolve(schema)
    problems: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, t) for t in types):
            return [f"{where}: {value!r} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where}: {value!r} != {schema['const']!r}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, int) and "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{where}: missing {name}")
        for name, item in value.items():
            if name in properties:
                problems += conforms(item, properties[name], f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: undocumented field {name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += conforms(item, schema["items"], f"{where}[{index}]")
    return problems


def test_the_checker_catches_what_it_should() -> None:
    schema = DOC["components"]["schemas"]["Merchant"]
    good = {
        "merchant_id": "100000000000001",
        "name": "x",
        "kind": "pharmacy",
        "designated_from": "2026-01-01",
        "designated_until": "2027-01-01",
        "suspended": False,
    }
    assert conforms(good, schema) == []
    assert conforms({**good, "extra": 1}, schema)
    assert conforms({**good, "kind": "bank"}, schema)
    assert conforms({k: v for k, v in good.items() if k != "name"}, schema)
    assert conforms({**good, "suspended": "no"}, schema)


class Checked:
    """Calls the server and checks each JSON answer against the documented schema."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.seen: set[tuple[str, str]] = set()

    async def call(
        self,
        method: str,
        template: str,
        status: int = 200,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        params: dict[str, str] | None = None,
        **path: Any,
    ) -> Any:
        operation = DOC["paths"][template][method.lower()]
        if body is not None:
            assert (
                conforms(body, operation["requestBody"]["content"]["application/json"]["schema"])
                == []
            )
        headers = bearer(token) if token else self.world.headers
        url = template.format(**path)
        resp = await self.world.client.request(
            method, url, json=body, headers=headers, params=params or {}
        )
        data = await resp.json()
        assert resp.status == status, data
        documented = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        assert conforms(data, documented) == [], (template, conforms(data, documented))
        self.seen.add((method, template))
        return data


async def test_answers_match_the_documented_schemas(world: World) -> None:
    api = Checked(world)
    ssn = new_ssn()
    recent = business_today() - timedelta(days=10)  # every test person is 16 by then
    await api.call("POST", "/v1/admin/people", 201, {"ssn": ssn, "name": "Doc Person"})
    card = await api.call("POST", "/v1/admin/cards", 201, {"ssn": ssn})
    await api.call("GET", "/v1/admin/cards/{pan}", pan=card["pan"])
    month = own_past_month()
    await api.call(
        "POST",
        "/v1/admin/people/{ssn}/contributions",
        201,
        {"month": ym(month), "employer_part": 500, "individual_part": 100},
        ssn=ssn,
    )
    await api.call("POST", "/v1/admin/allocations", 200, {"month": ym(month)})
    await api.call("GET", "/v1/admin/allocations/{month}", month=ym(month))
    await api.call(
        "GET",
        "/v1/admin/people/{ssn}/contributions",
        ssn=ssn,
        params={"from": ym(month), "to": ym(month)},
    )
    await api.call("GET", "/v1/admin/people/{ssn}/eligibility", ssn=ssn)
    employer = await api.call("POST", "/v1/admin/employers", 201, {"name": "Doc Employer"})
    await api.call("GET", "/v1/admin/employers/{employer_id}", employer_id=employer["employer_id"])
    employment = await api.call(
        "POST",
        "/v1/admin/employments",
        201,
        {"ssn": ssn, "employer_id": employer["employer_id"], "hired_on": recent.isoformat()},
    )
    await api.call(
        "GET",
        "/v1/admin/employers/{employer_id}/payment-notice",
        employer_id=employer["employer_id"],
    )
    await api.call("GET", "/v1/admin/reports/late-registrations")
    await api.call("GET", "/v1/admin/people/{ssn}", ssn=ssn)
    merchant_id = await world.merchant()
    await api.call("GET", "/v1/admin/merchants/{merchant_id}", merchant_id=merchant_id)
    await api.call("POST", "/v1/admin/merchants/{merchant_id}/suspend", merchant_id=merchant_id)
    terminal = await api.call("POST", "/v1/admin/terminals", 201, {"merchant_id": merchant_id})
    await api.call(
        "POST", "/v1/admin/terminals/{terminal_id}/rekey", terminal_id=terminal["terminal_id"]
    )
    await api.call("GET", "/v1/admin/audit", params={"limit": "5"})

    holder, token = await cardholder(world)
    await api.call("GET", "/v1/me", token=token)
    await api.call("GET", "/v1/me/balance", token=token)
    await api.call("GET", "/v1/me/statement", token=token)
    await api.call("GET", "/v1/me/contributions", token=token)
    await api.call("GET", "/v1/me/coverage", token=token)
    await api.call(
        "POST", "/v1/me/flexible-employment", 201, {"started_on": recent.isoformat()}, token
    )
    fresh = await login(world.client, holder["ssn"], NEW_PASSWORD)
    assert (
        conforms(
            fresh,
            DOC["paths"]["/v1/me/login"]["post"]["responses"]["200"]["content"]["application/json"][
                "schema"
            ],
        )
        == []
    )
    await api.call(
        "POST",
        "/v1/admin/cards/{pan}/replace",
        201,
        {"ssn": ssn},
        pan=card["pan"],
    )
    await api.call(
        "POST", "/v1/admin/employments/{employment_id}/end", 200, {"ended_on": recent.isoformat()},
        employment_id=employment["employment_id"],
    )  # fmt: skip
    error = await api.call("GET", "/v1/admin/people/{ssn}", 404, ssn=new_ssn())
    assert error["error"]["code"] == "not_found"
    assert len(api.seen) >= 25


async def test_closed_request_bodies_are_closed_on_the_server(world: World) -> None:
    """Every documented body says additionalProperties: false; the server must refuse
    an extra field with 400 for each of them."""
    _, token = await cardholder(world)
    values = {
        "ssn": new_ssn(),
        "pan": "6217990000999999994",
        "account_id": "1",
        "merchant_id": "100000000000001",
        "terminal_id": "ABCDEFGH",
        "employer_id": "91110000600037341L",
        "employment_id": "1",
        "card_id": "1",
        "month": "2026-01",
    }
    checked = 0
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation or path.startswith(
                ("/v1/transactions", "/v1/batches")
            ):
                continue
            schema = _resolve(operation["requestBody"]["content"]["application/json"]["schema"])
            assert schema.get("additionalProperties") is False, path
            url = re.sub(r"{([a-z_]+)}", lambda m: values[m.group(1)], path)
            headers = bearer(token) if path.startswith("/v1/me") else world.headers
            resp = await world.client.request(
                method.upper(), url, json={"zzz_not_a_field": 1}, headers=headers
            )
            assert resp.status == 400, (method, path, await resp.text())
            checked += 1
    assert checked >= 20
