"""The OpenAPI document, generated from the application's routes: each handler declares
its operation with @operation next to its @routes line, and the document is built by
walking every route of the app (sub-applications included). A route without an
operation makes create_app fail, and a documented operation exists only on a route.

Bodies and answers are msgspec structs (their schemas come from
msgspec.json.schema_components) or JSON Schema fragments from http/schemas.py; security
follows where the route is mounted (http/roles.py), so it cannot disagree with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from pos_gateway.http.roles import (
    CARDHOLDER_PREFIX,
    CARDHOLDER_PUBLIC,
    OPERATOR_PREFIX,
    all_routes,
)
from pos_gateway.http.schemas import SCHEMAS, Schema, json_content, ref

ADMIN, ME, TERMINAL = "adminToken", "cardholderSession", "terminalSignature"
_BY_MOUNT = object()  # security follows the sub-application the route is mounted in
_ERRORS = {
    "400": "malformed request",
    "401": "not authenticated",
    "403": "refused",
    "404": "not found",
    "409": "conflicts with the current state",
    "413": "body too large",
}
_REF_TEMPLATE = "#/components/schemas/{name}"
F = TypeVar("F", bound=Callable[..., Any])


class UndocumentedRoute(Exception):
    """A route without @operation: the document would not describe the server."""


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    tag: str
    security: object = _BY_MOUNT
    body: Any = None  # a msgspec Struct type (or union), or a JSON Schema fragment
    ok: Any = None
    status: str = "200"
    params: tuple[dict[str, Any], ...] = ()
    csv: bool = False
    errors: tuple[str, ...] = ("400", "401", "404", "409")
    ok_content: dict[str, Any] | None = None
    csv_body: bool = False  # the body may also be a text/csv file


def operation(
    summary: str,
    tag: str,
    *,
    security: object = _BY_MOUNT,
    body: Any = None,
    ok: Any = None,
    status: str = "200",
    params: list[dict[str, Any]] | None = None,
    csv: bool = False,
    errors: tuple[str, ...] = ("400", "401", "404", "409"),
    ok_content: dict[str, Any] | None = None,
    csv_body: bool = False,
) -> Callable[[F], F]:
    """Declare the handler's OpenAPI operation (summary, tag, body, answer, parameters)."""
    declared = Operation(
        summary, tag, security, body, ok, status, tuple(params or ()), csv, errors, ok_content,
        csv_body,
    )  # fmt: skip

    def attach(handler: F) -> F:
        handler.__openapi__ = declared  # type: ignore[attr-defined]
        return handler

    return attach


def not_api(reason: str) -> Callable[[F], F]:
    """Mark a handler served on purpose outside the JSON API (an HTML page, a redirect),
    so it is left out of the document; `reason` says why, for the reader."""

    def attach(handler: F) -> F:
        handler.__not_api__ = reason  # type: ignore[attr-defined]
        return handler

    return attach


def _is_typed(value: Any) -> bool:
    return value is not None and not isinstance(value, dict)


class _Schemas:
    """Collects the struct types named by the operations; refs are resolved at the end."""

    def __init__(self) -> None:
        self.types: list[Any] = []

    def of(self, value: Any) -> Schema:
        if not _is_typed(value):
            return value if value is not None else {"type": "object"}
        self.types.append(value)
        return {"__typed__": len(self.types) - 1}

    def resolve(self, document: dict[str, Any]) -> None:
        if not self.types:
            return
        schemas, components = msgspec.json.schema_components(self.types, ref_template=_REF_TEMPLATE)
        document["components"]["schemas"].update(components)

        def replace(node: Any) -> Any:
            if isinstance(node, dict):
                if set(node) == {"__typed__"}:
                    return schemas[node["__typed__"]]
                return {k: replace(v) for k, v in node.items()}
            if isinstance(node, list):
                return [replace(v) for v in node]
            return node

        document["paths"] = replace(document["paths"])


def _security(method: str, path: str, declared: object) -> str | None:
    if declared is not _BY_MOUNT:
        return declared  # type: ignore[return-value]
    if path.startswith(OPERATOR_PREFIX + "/"):
        return ADMIN
    if path.startswith(CARDHOLDER_PREFIX) and (method, path) not in CARDHOLDER_PUBLIC:
        return ME
    return None


def _operation(method: str, path: str, op: Operation, schemas: _Schemas) -> dict[str, Any]:
    security = _security(method, path, op.security)
    out: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "security": [] if security is None else [{security: []}],
    }
    path_params = [p for p in op.params if p["in"] == "path"]
    missing = set(re.findall(r"{([a-z_]+)}", path)) - {p["name"] for p in path_params}
    if missing:
        raise UndocumentedRoute(f"{method} {path}: path parameter(s) {sorted(missing)}")
    if op.params:
        out["parameters"] = list(op.params)
    if op.body is not None:
        body = json_content(schemas.of(op.body))
        if op.csv_body:
            body["text/csv"] = {"schema": {"type": "string"}}
        out["requestBody"] = {"required": True, "content": body}
    content = op.ok_content if op.ok_content is not None else json_content(schemas.of(op.ok))
    if op.csv:
        content = {**content, "text/csv": {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {op.status: {"description": "success", "content": content}}
    for code in op.errors:
        responses[code] = {"description": _ERRORS[code], "content": json_content(ref("Error"))}
    out["responses"] = responses
    return out


def _is_static(handler: Any) -> bool:
    # Files under app.router.add_static(): not operations of the API.
    return isinstance(getattr(handler, "__self__", None), web.StaticResource)


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`, from its routes; UndocumentedRoute if a route
    has no @operation."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler in sorted(all_routes(app), key=lambda r: (r[1], r[0])):
        if getattr(handler, "__not_api__", None) or _is_static(handler):
            continue
        declared = getattr(handler, "__openapi__", None)
        if not isinstance(declared, Operation):
            raise UndocumentedRoute(f"{method} {path} has no @operation")
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, declared, schemas)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Medical-insurance card POS gateway",
            "version": "1.0.0",
            "description": (
                "Terminal protocol (signed JSON, amounts in integer fen), operator API "
                "(/v1/admin, bearer POS_ADMIN_TOKEN; optional X-Operator-Id names the "
                "operator in the audit trail) and cardholder API (/v1/me, bearer session "
                "token from /v1/me/login)."
            ),
        },
        "tags": [
            {"name": "terminal"},
            {"name": "operator"},
            {"name": "cardholder"},
            {"name": "operations"},
        ],
        "paths": paths,
        "components": {
            "schemas": dict(SCHEMAS),
            "securitySchemes": {
                ADMIN: {"type": "http", "scheme": "bearer"},
                ME: {"type": "http", "scheme": "bearer"},
                TERMINAL: {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Signature",
                    "description": (
                        "lowercase hex HMAC-SHA256(mac_key, METHOD\\nPATH\\nX-Timestamp\\n"
                        "hex(SHA-256(body))), with X-Terminal-Id and X-Timestamp headers"
                    ),
                },
            },
        },
    }
    schemas.resolve(document)
    return document


OPENAPI = web.AppKey("openapi", dict)


def document_app(app: web.Application) -> None:
    """Build the document once, when the app is assembled: an undocumented route fails
    here, at create_app, not when a client first asks for the document."""
    app[OPENAPI] = build_document(app)


@operation("This document", "operations", ok={"type": "object"}, errors=())
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(request.config_dict[OPENAPI])
