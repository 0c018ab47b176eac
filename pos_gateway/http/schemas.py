"""JSON Schema building blocks of the answers and operator/cardholder bodies that are
not (yet) typed structs, and the path and query parameters, for the operations declared
on the handlers (see http/api.py)."""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]

# Building blocks ------------------------------------------------------------------------

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
FEN: Schema = {"type": "integer", "minimum": 0, "description": "amount in fen (1 CNY = 100 fen)"}
SIGNED_FEN: Schema = {"type": "integer", "description": "signed amount in fen"}
DATE: Schema = {"type": "string", "format": "date"}
TIME: Schema = {"type": "string", "format": "date-time"}
MONTH: Schema = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$", "description": "YYYY-MM"}
SSN: Schema = {
    "type": "string",
    "pattern": "^[0-9]{17}[0-9X]$",
    "description": "citizen ID number (GB 11643), which is the social security number",
}
PAN: Schema = {"type": "string", "pattern": "^[0-9]{16,19}$"}
MASKED_PAN: Schema = {"type": "string", "description": "first 6 and last 4 digits"}
PIN: Schema = {"type": "string", "pattern": "^[0-9]{4,12}$"}
PASSWORD: Schema = {"type": "string", "minLength": 1, "maxLength": 64}
MERCHANT_ID: Schema = {"type": "string", "pattern": "^[0-9A-Z]{15}$"}
TERMINAL_ID: Schema = {"type": "string", "pattern": "^[0-9A-Z]{8}$"}
EMPLOYER_ID: Schema = {
    "type": "string",
    "pattern": "^[0-9A-HJ-NPQRTUWXY]{18}$",
    "description": "unified social credit code (GB 32100)",
}
MAC_KEY: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "HMAC-SHA256 key"}
PIN_KEY: Schema = {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "AES-128 key"}
CURSOR: Schema = {"type": ["string", "null"], "description": "pass back as ?cursor= for more"}


def nullable(schema: Schema) -> Schema:
    out = copy.deepcopy(schema)
    out["type"] = [schema["type"], "null"]
    return out


def obj(properties: dict[str, Schema], required: tuple[str, ...] | None = None) -> Schema:
    """A closed object; all properties required unless `required` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": False,
    }


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# Schemas --------------------------------------------------------------------------------

FIGURES = obj({"count": {"type": "integer", "minimum": 0}, "amount": FEN})
STATEMENT_ENTRY = obj(
    {
        "entry_id": INT,
        "time": TIME,
        "kind": {"enum": ["allocation", "adjustment", "purchase", "refund", "reversal"]},
        "amount": SIGNED_FEN,
        "balance_after": FEN,
        "merchant_id": nullable(STR),
        "merchant_name": nullable(STR),
        "terminal_id": nullable(STR),
        "rrn": nullable(STR),
        "reference": nullable(STR),
    }
)
EMPLOYMENT = obj(
    {
        "employment_id": INT,
        "ssn": SSN,
        "name": STR,
        "kind": {"enum": ["employee", "flexible"]},
        "employer_id": nullable(STR),
        "employer_name": nullable(STR),
        "hired_on": DATE,
        "registered_on": DATE,
        "days_to_register": INT,
        "deadline_days": INT,
        "late_registration": BOOL,
        "ended_on": nullable(DATE),
        "registered_by": {"enum": ["operator", "cardholder"]},
    }
)
SUSPENSION = obj({"from_month": MONTH, "resumed_from": nullable(MONTH)})
NOTICE_TOTALS: dict[str, Schema] = {
    "paid_months": INT,
    "missing_months": array(MONTH),
    "employer_part_paid": FEN,
    "individual_part_paid": FEN,
}
MONTH_STATUS: Schema = {"enum": ["paid", "missing", "suspended"]}
PERSON_NOTICE = obj(
    {
        "ssn": SSN,
        "name": STR,
        "from": MONTH,
        "to": MONTH,
        **NOTICE_TOTALS,
        "months": array(
            obj(
                {
                    "ssn": SSN,
                    "month": MONTH,
                    "status": MONTH_STATUS,
                    "employer_part": FEN,
                    "individual_part": FEN,
                    "payer": {
                        "type": ["string", "null"],
                        "description": "employer_id, 'flexible', or null when not employed",
                    },
                }
            )
        ),
    }
)
EMPLOYEE_NOTICE_LINE = obj(
    {
        "ssn": SSN,
        "name": STR,
        "month": MONTH,
        "status": MONTH_STATUS,
        "employer_part": FEN,
        "individual_part": FEN,
    }
)
EMPLOYER_NOTICE = obj(
    {
        "employer_id": EMPLOYER_ID,
        "name": STR,
        "from": MONTH,
        "to": MONTH,
        **NOTICE_TOTALS,
        "employees": array(
            obj(
                {
                    "ssn": SSN,
                    "name": STR,
                    "employment_id": INT,
                    "hired_on": DATE,
                    "ended_on": nullable(DATE),
                    "late_registration": BOOL,
                    **NOTICE_TOTALS,
                    "months": array(ref("EmployeeNoticeLine")),
                }
            )
        ),
    }
)
ELIGIBILITY = obj(
    {
        "ssn": SSN,
        "name": STR,
        "date": DATE,
        "month": MONTH,
        "covered": BOOL,
        "reason": {
            "enum": [
                "contribution_paid_for_month",
                "contribution_paid_for_previous_month",
                "insurance_suspended",
                "contributions_interrupted",
                "no_contributions",
            ]
        },
        "explanation": STR,
        "paid_for_month": BOOL,
        "paid_for_previous_month": BOOL,
        "last_paid_month": nullable(MONTH),
        "suspended_from": nullable(MONTH),
        "individual_account": obj(
            {
                "account_id": INT,
                "balance": FEN,
                "status": {"enum": ["active", "frozen"]},
                "usable_at_pos": BOOL,
            }
        ),
    }
)
ALLOCATION_SUMMARY_PROPS: dict[str, Schema] = {
    "month": MONTH,
    "reference": STR,
    "employer_share_percent": INT,
    "allocated": obj(
        {
            "persons": INT,
            "amount": FEN,
            "employer_part": FEN,
            "individual_part": FEN,
            "to_pooled_fund": FEN,
        }
    ),
    "pending_persons": INT,
}
MERCHANT = obj(
    {
        "merchant_id": MERCHANT_ID,
        "name": STR,
        "kind": {"enum": ["pharmacy", "hospital"]},
        "designated_from": DATE,
        "designated_until": DATE,
        "suspended": BOOL,
    }
)
TERMINAL_KEYS = obj(
    {"terminal_id": TERMINAL_ID, "merchant_id": MERCHANT_ID, "mac_key": MAC_KEY, "pin_key": PIN_KEY}
)
ISSUED_CARD = obj(
    # password: the holder's random first self-service password, with the first card only
    {"pan": PAN, "account_id": INT, "expires_on": DATE, "pin": PIN, "password": STR},
    ("pan", "account_id", "expires_on"),
)
ERROR = obj({"error": obj({"code": STR, "message": STR})})

SCHEMAS: dict[str, Schema] = {
    "Error": ERROR,
    "StatementEntry": STATEMENT_ENTRY,
    "Employment": EMPLOYMENT,
    "Suspension": SUSPENSION,
    "PersonNotice": PERSON_NOTICE,
    "EmployeeNoticeLine": EMPLOYEE_NOTICE_LINE,
    "EmployerNotice": EMPLOYER_NOTICE,
    "Eligibility": ELIGIBILITY,
    "Merchant": MERCHANT,
    "TerminalKeys": TERMINAL_KEYS,
    "IssuedCard": ISSUED_CARD,
}


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


ADMIN, ME, TERMINAL = "adminToken", "cardholderSession", "terminalSignature"
SSN_PATH = param("ssn", "path", SSN)
PAN_PATH = param("pan", "path", PAN)
ACCOUNT_PATH = param("account_id", "path", INT)
MERCHANT_PATH = param("merchant_id", "path", MERCHANT_ID)
TERMINAL_PATH = param("terminal_id", "path", TERMINAL_ID)
EMPLOYER_PATH = param("employer_id", "path", EMPLOYER_ID)
CARD_PATH = param("card_id", "path", INT, "card_id from GET /v1/me")
STATEMENT_PAGE = obj({"entries": array(ref("StatementEntry")), "next_cursor": CURSOR})
STATUS_ONLY = obj({"status": STR})
