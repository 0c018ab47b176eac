"""Operator API for DESIGN §10: catalogue and policy loading, the fund's liability."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pos_gateway.errors import BadRequest
from pos_gateway.http.admin import operator
from pos_gateway.http.render import csv_response, wants_csv
from pos_gateway.http.state import SERVICES
from pos_gateway.http.validation import field_date, parse_json_object
from pos_gateway.services import settlement

routes = web.RouteTableDef()

FUND_LIABILITY_COLUMNS = (
    "local_date", "merchant_id", "merchant_name", "purchases_count", "owed", "given_back",
    "net_amount",
)  # fmt: skip


# A catalogue is loaded in bulk: more than the terminal protocol's 16 KiB per request.
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
            raise BadRequest("CSV must be UTF-8", code="invalid_csv") from None
    data = parse_json_object(body)
    if set(data) != {name} or not isinstance(data[name], list):
        raise BadRequest(f'body must be {{"{name}": [...]}} or a text/csv file')
    return data[name]


@routes.post("/v1/admin/catalogue")
@operator
async def load_catalogue(request: web.Request) -> web.Response:
    """Add or replace catalogue items by code, all or nothing."""
    rows = await _rows(request, "items")
    loaded = await settlement.load_catalogue(request.app[SERVICES].pool, rows)
    return web.json_response({"loaded": loaded}, status=201)


@routes.get("/v1/admin/catalogue")
@operator
async def get_catalogue(request: web.Request) -> web.Response:
    return web.json_response({"items": await settlement.catalogue(request.app[SERVICES].pool)})


@routes.post("/v1/admin/policies")
@operator
async def load_policies(request: web.Request) -> web.Response:
    """Add or replace policies by merchant kind and year, all or nothing."""
    rows = await _rows(request, "policies")
    loaded = await settlement.load_policies(request.app[SERVICES].pool, rows)
    return web.json_response({"loaded": loaded}, status=201)


@routes.get("/v1/admin/policies")
@operator
async def get_policies(request: web.Request) -> web.Response:
    raw = request.query.get("year")
    if raw is not None and not (raw.isascii() and raw.isdigit() and len(raw) == 4):
        raise BadRequest("year must be YYYY")
    rows = await settlement.policies(request.app[SERVICES].pool, int(raw) if raw else None)
    return web.json_response({"policies": rows})


@routes.get("/v1/admin/reports/fund-liability")
@operator
async def fund_liability(request: web.Request) -> web.StreamResponse:
    """What the pooled fund owes each merchant per day:
    ?from=YYYY-MM-DD&until=YYYY-MM-DD[&merchant_id=…]&format=json|csv."""
    query = dict(request.query)
    since = field_date(query, "from")
    until = field_date(query, "until", required=False) or since
    rows = await settlement.fund_liability(
        request.app[SERVICES].pool, since, until, query.get("merchant_id")
    )
    if wants_csv(request):
        return csv_response(rows, FUND_LIABILITY_COLUMNS, f"fund-liability-{since}.csv")
    return web.json_response({"from": since.isoformat(), "until": until.isoformat(),
                              "merchants": rows})  # fmt: skip
