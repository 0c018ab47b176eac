"""Operator API for DESIGN §10: catalogue and policy loading, the fund's liability
(mounted in the /v1/admin sub-application, so authenticated as every operator route)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pos_gateway.errors import InvalidInput
from pos_gateway.http.actors import operator_actor
from pos_gateway.http.answers import Catalogue, FundLiability, Loaded, Policies, render
from pos_gateway.http.api import operation
from pos_gateway.http.render import csv_response, wants_csv
from pos_gateway.http.schemas import DATE, FORMAT, INT, MERCHANT_ID, obj, param
from pos_gateway.http.state import SERVICES
from pos_gateway.http.validation import field_date, parse_json_object
from pos_gateway.services import settlement

routes = web.RouteTableDef()

FUND_LIABILITY_COLUMNS = (
    "local_date", "merchant_id", "merchant_name", "purchases_count", "owed", "given_back",
    "net_amount",
)  # fmt: skip
# Rows are checked by the service, with their line numbers: the body only frames them.
_ROWS = {"type": "array", "items": {"type": "object"}}
_LOAD_ERRORS = ("400", "401", "413")


# A catalogue is loaded in bulk: more than the sub-application's 16 KiB per request.
MAX_LOAD_BYTES = 4 * 1024 * 1024


async def _read_load(request: web.Request) -> bytes:
    """The body, up to MAX_LOAD_BYTES (request.read() would stop at the app's limit)."""
    if request.content_length is not None and request.content_length > MAX_LOAD_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_LOAD_BYTES, request.content_length)
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_LOAD_BYTES:
            raise web.HTTPRequestEntityTooLarge(MAX_LOAD_BYTES, len(body))
    return bytes(body)


async def _rows(request: web.Request, name: str) -> list[Any] | str:
    """`{"<name>": [...]}` as JSON, or the CSV file itself (text/csv, header first)."""
    body = await _read_load(request)
    if request.content_type == "text/csv":
        try:
            return body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("CSV must be UTF-8", code="invalid_csv") from None
    data = parse_json_object(body)
    if set(data) != {name} or not isinstance(data[name], list):
        raise InvalidInput(f'body must be {{"{name}": [...]}} or a text/csv file')
    return data[name]


async def _load(
    request: web.Request, name: str, loader: Callable[..., Awaitable[int]]
) -> web.Response:
    """One all-or-nothing load: the rows under `name` (or the CSV file) through `loader`,
    audited under the calling operator."""
    rows = await _rows(request, name)
    loaded = await loader(request.config_dict[SERVICES].pool, rows, actor=operator_actor(request))
    return render({"loaded": loaded}, Loaded, status=201)


@routes.post("/v1/admin/catalogue")
@operation(
    "Load catalogue items (add or replace by code), all or nothing: "
    '{"items": [{code, name, category, self_pay_bp}]} or a text/csv file (up to 4 MiB)',
    "operator",
    body=obj({"items": _ROWS}),
    csv_body=True,
    ok=Loaded,
    status="201",
    errors=_LOAD_ERRORS,
)
async def load_catalogue(request: web.Request) -> web.Response:
    """Add or replace catalogue items by code, all or nothing."""
    return await _load(request, "items", settlement.load_catalogue)


@routes.get("/v1/admin/catalogue")
@operation("The catalogue", "operator", ok=Catalogue, errors=("401",))
async def get_catalogue(request: web.Request) -> web.Response:
    rows = await settlement.catalogue(request.config_dict[SERVICES].pool)
    return render({"items": rows}, Catalogue)


@routes.post("/v1/admin/policies")
@operation(
    "Load policies per merchant kind and year, all or nothing: "
    '{"policies": [{merchant_kind, year, deductible, fund_ratio_bp, annual_cap, '
    "daily_amount_limit, daily_count_limit}]} or a text/csv file (up to 4 MiB)",
    "operator",
    body=obj({"policies": _ROWS}),
    csv_body=True,
    ok=Loaded,
    status="201",
    errors=_LOAD_ERRORS,
)
async def load_policies(request: web.Request) -> web.Response:
    """Add or replace policies by merchant kind and year, all or nothing."""
    return await _load(request, "policies", settlement.load_policies)


@routes.get("/v1/admin/policies")
@operation(
    "The policies (of one year with ?year=YYYY)",
    "operator",
    params=[param("year", "query", INT)],
    ok=Policies,
    errors=("400", "401"),
)
async def get_policies(request: web.Request) -> web.Response:
    raw = request.query.get("year")
    if raw is not None and not (raw.isascii() and raw.isdigit() and len(raw) == 4):
        raise InvalidInput("year must be YYYY")
    rows = await settlement.policies(request.config_dict[SERVICES].pool, int(raw) if raw else None)
    return render({"policies": rows}, Policies)


@routes.get("/v1/admin/reports/fund-liability")
@operation(
    "What the pooled fund owes each merchant per day",
    "operator",
    params=[
        {**param("from", "query", DATE), "required": True},
        param("until", "query", DATE),
        param("merchant_id", "query", MERCHANT_ID),
        FORMAT,
    ],
    ok=FundLiability,
    csv=True,
    errors=("400", "401"),
)
async def fund_liability(request: web.Request) -> web.StreamResponse:
    """What the pooled fund owes each merchant per day:
    ?from=YYYY-MM-DD&until=YYYY-MM-DD[&merchant_id=…]&format=json|csv."""
    query = dict(request.query)
    since = field_date(query, "from")
    until = field_date(query, "until", required=False) or since
    rows = await settlement.fund_liability(
        request.config_dict[SERVICES].pool, since, until, query.get("merchant_id")
    )
    if wants_csv(request):
        return csv_response(rows, FUND_LIABILITY_COLUMNS, f"fund-liability-{since}.csv")
    answer = {"from": since.isoformat(), "until": until.isoformat(), "merchants": rows}
    return render(answer, FundLiability)
