"""GET /v1/openapi.json describes the server as it is: the same routes, request bodies the
server holds to, and answers that match the documented schemas."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from pos_gateway.app import create_app
from pos_gateway.http.api import UndocumentedRoute, build_document, not_api
from pos_gateway.http.roles import all_routes
from pos_gateway.settings import Secrets, Settings

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
from .test_roles import PUBLIC

pytestmark = pytest.mark.usefixtures("ledger_clean")

DOC = build_document(create_app(Settings(secrets=Secrets(bytes(32), bytes(32), "t"))))
_METHODS = {"get", "post", "put", "patch", "delete"}


def _app_routes(app: web.Application) -> set[tuple[str, str]]:
    # HTML pages (DESIGN §11, pos_gateway/web) are marked @not_api: not the JSON API.
    return {
        (method, path)
        for method, path, handler in all_routes(app)
        if not getattr(handler, "__not_api__", None)
    }


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


def test_the_document_is_well_formed() -> None:
    validate(DOC)  # OpenAPI 3.1, with its JSON Schemas
    assert sum(len(item) for item in DOC["paths"].values()) >= 53
    for path, item in DOC["paths"].items():
        names = set(re.findall(r"{([a-z_]+)}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)
            expected = [] if (method.upper(), path) in PUBLIC else [{"x": []}]
            assert len(operation["security"]) == len(expected), (method, path)


def test_a_route_without_an_operation_cannot_be_served() -> None:
    async def undocumented(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v1/somewhere", undocumented)
    with pytest.raises(UndocumentedRoute, match="/v1/somewhere"):
        build_document(app)


def test_pages_and_static_files_are_left_out_only_when_said_so(tmp_path) -> None:
    @not_api("an HTML page")
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<p>hello</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/pages/hello", page)
    app.router.add_static("/static", tmp_path)
    assert build_document(app)["paths"] == {}


def conforms(value: Any, schema: dict[str, Any]) -> list[str]:
    """What a real JSON Schema (2020-12) validator finds wrong with `value`; the
    document's components travel along so that $refs resolve."""
    root = {**schema, "components": DOC["components"]}
    validator = jsonschema.Draft202012Validator(root)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]


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


def test_the_transaction_schema_says_which_fields_each_type_needs() -> None:
    body = DOC["paths"]["/v1/transactions"]["post"]["requestBody"]["content"]
    schema = body["application/json"]["schema"]
    purchase = {
        "type": "purchase", "stan": "000001", "local_time": "2026-11-24T10:15:00+08:00",
        "pan": "6217990000999999994", "pin_block": "ab" * 16, "amount": 1, "currency": "CNY",
    }  # fmt: skip
    assert conforms(purchase, schema) == []
    assert conforms({**purchase, "amount": 1.5}, schema)
    assert conforms({k: v for k, v in purchase.items() if k != "pin_block"}, schema)
    refund = {**purchase, "type": "refund", "original_rrn": "123456789012"}
    assert conforms(refund, schema)  # a refund carries no PIN block
    del refund["pin_block"]
    assert conforms(refund, schema) == []


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
    await api.call(
        "POST",
        "/v1/admin/people/{ssn}/contributions/{month}/correction",
        200,
        {"employer_part": 600, "individual_part": 100, "reason": "payroll typo"},
        ssn=ssn,
        month=ym(month),
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
    settlement = DOC["paths"]["/v1/admin/settlement"]["get"]
    assert {p["name"]: p["required"] for p in settlement["parameters"]}["date"] is False
    await api.call("GET", "/v1/admin/settlement")  # the day defaults to today

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


def _answer_schema(path: str, method: str = "post") -> dict[str, Any]:
    responses = DOC["paths"][path][method]["responses"]
    return responses["200"]["content"]["application/json"]["schema"]


async def test_terminal_answers_match_the_documented_schemas(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    answers = [
        await terminal.transact("purchase", pan=card["pan"], pin=card["pin"], amount=1250),
        await terminal.transact("balance_inquiry", pan=card["pan"], pin=card["pin"]),
        await terminal.transact("purchase", pan=card["pan"], pin="0000", amount=1),  # 55
        await terminal.transact("cash_withdrawal", pan=card["pan"], amount=100),  # 57
    ]
    codes = []
    for _, answer in answers:
        assert answer.status == 200
        assert conforms(answer.body, _answer_schema("/v1/transactions")) == [], answer.body
        codes.append(answer.response_code)
    assert codes == ["00", "00", "55", "57"]
    opened = await terminal.open_batch()
    assert conforms(opened.body, _answer_schema("/v1/batches/open", "get")) == []
    _, closed = await terminal.close_batch(
        opened.body["batch_no"], {"count": 1, "amount": 1250}, {"count": 0, "amount": 0}
    )
    assert closed.status == 200, closed.body
    assert conforms(closed.body, _answer_schema("/v1/batches/close")) == []
    assert conforms({**closed.body, "extra": 1}, _answer_schema("/v1/batches/close"))


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
