"""JSON Schema building blocks of the path and query parameters and of the error object,
for the operations declared on the handlers (see http/api.py). Bodies and answers are
msgspec structs: http/bodies.py, http/answers.py, http/messages.py."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# Building blocks ------------------------------------------------------------------------

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
DATE: Schema = {"type": "string", "format": "date"}
MONTH: Schema = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$", "description": "YYYY-MM"}
SSN: Schema = {
    "type": "string",
    "pattern": "^[0-9]{17}[0-9X]$",
    "description": "citizen ID number (GB 11643), which is the social security number",
}
PAN: Schema = {"type": "string", "pattern": "^[0-9]{16,19}$"}
MERCHANT_ID: Schema = {"type": "string", "pattern": "^[0-9A-Z]{15}$"}
TERMINAL_ID: Schema = {"type": "string", "pattern": "^[0-9A-Z]{8}$"}
EMPLOYER_ID: Schema = {
    "type": "string",
    "pattern": "^[0-9A-HJ-NPQRTUWXY]{18}$",
    "description": "unified social credit code (GB 32100)",
}


def obj(properties: dict[str, Schema], required: tuple[str, ...] | None = None) -> Schema:
    """A closed object; all properties required unless `required` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": False,
    }


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


ERROR = obj({"error": obj({"code": STR, "message": STR})})
SCHEMAS: dict[str, Schema] = {"Error": ERROR}


def json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def param(name: str, where: str, schema: Schema, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "required": where == "path"}
    out["schema"] = schema
    if description:
        out["description"] = description
    return out


FORMAT = param("format", "query", {"enum": ["json", "csv"]}, "json (default) or csv")
LIMIT = param("limit", "query", {"type": "integer", "minimum": 1}, "page size")
CURSOR_PARAM = param("cursor", "query", STR, "next_cursor of the previous page")
FROM_MONTH = param("from", "query", MONTH, "first month (default: 11 months before 'to')")
TO_MONTH = param("to", "query", MONTH, "last month (default: the current month)")


SSN_PATH = param("ssn", "path", SSN)
PAN_PATH = param("pan", "path", PAN)
ACCOUNT_PATH = param("account_id", "path", INT)
MERCHANT_PATH = param("merchant_id", "path", MERCHANT_ID)
TERMINAL_PATH = param("terminal_id", "path", TERMINAL_ID)
EMPLOYER_PATH = param("employer_id", "path", EMPLOYER_ID)
CARD_PATH = param("card_id", "path", INT, "card_id from GET /v1/me")
