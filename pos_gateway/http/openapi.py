"""The OpenAPI 3.1 document of the gateway, served at GET /v1/openapi.json.

Written out here, next to the handlers it describes; tests check that it names exactly
the routes the application registers, and that request bodies and answers match it.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

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
    {"pan": PAN, "account_id": INT, "expires_on": DATE, "pin": PIN},
    ("pan", "account_id", "expires_on"),
)
SPLIT: Schema = {
    "type": "object",
    "description": "itemised purchase or settlement trial, approved (DESIGN §10)",
    "properties": {
        "total": FEN, "eligible": FEN, "deductible_applied": FEN, "fund": FEN,
        "account": FEN, "cash": FEN, "covered": BOOL,
    },
}  # fmt: skip
TRANSACTION_ANSWER: Schema = {
    "type": "object",
    "properties": {
        "response_code": {"type": "string", "pattern": "^[0-9]{2}$"},
        "approved": BOOL,
        "message": STR,
        "stan": STR,
        "rrn": STR,
        "auth_code": STR,
        "amount": FEN,
        "balance": FEN,
        "transaction_id": STR,
        "split": SPLIT,
    },
    "required": ["response_code", "approved", "message"],
    "additionalProperties": False,
}
TRANSACTION_REQUEST: Schema = {
    "type": "object",
    "description": "fields by type: see DESIGN §4",
    "properties": {
        "type": {
            "enum": [
                "purchase",
                "balance_inquiry",
                "refund",
                "reversal",
                "cash_withdrawal",
                "transfer",
                "settlement_trial",
            ]
        },
        "stan": {"type": "string", "pattern": "^[0-9]{6}$"},
        "local_time": {"type": "string", "description": "ISO 8601 with UTC offset"},
        "pan": PAN,
        "pin_block": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
        "amount": FEN,
        "currency": {"const": "CNY"},
        "original_rrn": {"type": "string", "pattern": "^[0-9]{12}$"},
        "original_stan": {"type": "string", "pattern": "^[0-9]{6}$"},
        "original_local_time": {
            "type": "string",
            "description": "reversal only: the original's local_time (ISO 8601 with offset)",
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "description": "purchase or settlement_trial: the itemised lines (DESIGN §10)",
            "items": {
                "type": "object",
                "properties": {
                    "code": STR,
                    "quantity": {"type": "integer", "minimum": 1},
                    "unit_price": FEN,
                },
                "required": ["code", "quantity", "unit_price"],
                "additionalProperties": False,
            },
        },
        "account_max": FEN,
    },
    "required": ["type", "stan", "local_time"],
    "additionalProperties": False,
}
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
    "TransactionRequest": TRANSACTION_REQUEST,
    "TransactionAnswer": TRANSACTION_ANSWER,
}

# Operations -----------------------------------------------------------------------------

_ERRORS = {
    "400": "malformed request",
    "401": "not authenticated",
    "403": "refused",
    "404": "not found",
    "409": "conflicts with the current state",
}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _param(name: str, where: str, schema: Schema, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "required": where == "path"}
    out["schema"] = schema
    if description:
        out["description"] = description
    return out


FORMAT = _param("format", "query", {"enum": ["json", "csv"]}, "json (default) or csv")
LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1}, "page size")
CURSOR_PARAM = _param("cursor", "query", STR, "next_cursor of the previous page")
FROM_MONTH = _param("from", "query", MONTH, "first month (default: 11 months before 'to')")
TO_MONTH = _param("to", "query", MONTH, "last month (default: the current month)")


def op(
    summary: str,
    tag: str,
    *,
    security: str | None,
    body: Schema | None = None,
    ok: Schema | None = None,
    status: str = "200",
    params: list[dict[str, Any]] | None = None,
    csv: bool = False,
    errors: tuple[str, ...] = ("400", "401", "404", "409"),
    ok_content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag]}
    if security is None:
        operation["security"] = []
    else:
        operation["security"] = [{security: []}]
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    content = ok_content if ok_content is not None else _json(ok or {"type": "object"})
    if csv:
        content = {**content, "text/csv": {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {status: {"description": "success", "content": content}}
    for code in errors:
        responses[code] = {"description": _ERRORS[code], "content": _json(ref("Error"))}
    operation["responses"] = responses
    return operation


ADMIN, ME, TERMINAL = "adminToken", "cardholderSession", "terminalSignature"
SSN_PATH = _param("ssn", "path", SSN)
PAN_PATH = _param("pan", "path", PAN)
ACCOUNT_PATH = _param("account_id", "path", INT)
MERCHANT_PATH = _param("merchant_id", "path", MERCHANT_ID)
TERMINAL_PATH = _param("terminal_id", "path", TERMINAL_ID)
EMPLOYER_PATH = _param("employer_id", "path", EMPLOYER_ID)
CARD_PATH = _param("card_id", "path", INT, "card_id from GET /v1/me")
STATEMENT_PAGE = obj({"entries": array(ref("StatementEntry")), "next_cursor": CURSOR})
STATUS_ONLY = obj({"status": STR})
MONTH_BODY = obj({"from_month": MONTH})


def _paths() -> dict[str, dict[str, Any]]:
    t, a, m, o = "terminal", "operator", "cardholder", "operations"
    return {
        # Terminal protocol (DESIGN §4) -------------------------------------------------
        "/v1/transactions": {
            "post": op(
                "Every financial request (purchase, balance inquiry, refund, reversal; cash "
                "withdrawal and transfer are declined 57)",
                t,
                security=TERMINAL,
                body=ref("TransactionRequest"),
                ok=ref("TransactionAnswer"),
                errors=("400", "401", "403"),
            )
        },
        "/v1/batches/close": {
            "post": op(
                "Close the open batch: compare the terminal's totals with the gateway's",
                t,
                security=TERMINAL,
                body=obj({"batch_no": INT, "purchases": FIGURES, "refunds": FIGURES}),
                ok=obj(
                    {
                        "batch_no": INT,
                        "in_balance": BOOL,
                        "gateway": obj({"purchases": FIGURES, "refunds": FIGURES}),
                        "terminal": obj({"purchases": FIGURES, "refunds": FIGURES}),
                        "next_batch_no": INT,
                    }
                ),
                errors=("400", "401", "403", "409"),
            )
        },
        "/v1/batches/open": {
            "get": op(
                "The open batch number (signed request, empty body)",
                t,
                security=TERMINAL,
                ok=obj({"batch_no": INT}),
                errors=("401", "403"),
            )
        },
        # Operations -----------------------------------------------------------------------
        "/healthz": {
            "get": op(
                "200 once the database answers, 503 otherwise",
                o,
                security=None,
                ok=obj({"status": STR}),
                errors=(),
            )
        },
        "/metrics": {
            "get": op(
                "Prometheus metrics",
                o,
                security=None,
                ok_content={"text/plain": {"schema": STR}},
                errors=(),
            )
        },
        "/v1/openapi.json": {
            "get": op("This document", o, security=None, ok={"type": "object"}, errors=())
        },
        # Operator: people, accounts, contributions -------------------------------------
        "/v1/admin/people": {
            "post": op(
                "Register a person and their individual account (idempotent on the ssn)",
                a,
                security=ADMIN,
                body=obj({"ssn": SSN, "name": STR, "opening_allocation": FEN}, ("ssn", "name")),
                ok=obj({"ssn": SSN, "account_id": INT, "balance": FEN, "created": BOOL}),
                status="201",
            )
        },
        "/v1/admin/people/{ssn}": {
            "get": op(
                "A person: birth date and sex (from the ID number), account, cards, "
                "employments, suspensions",
                a,
                security=ADMIN,
                params=[SSN_PATH],
                ok=obj(
                    {
                        "ssn": SSN,
                        "name": STR,
                        "birth_date": DATE,
                        "sex": {"enum": ["male", "female"]},
                        "account_id": INT,
                        "balance": FEN,
                        "account_status": STR,
                        "cards": array(
                            obj(
                                {
                                    "pan": PAN,
                                    "status": STR,
                                    "expires_on": DATE,
                                    "pin_failures": INT,
                                }
                            )
                        ),
                        "employments": array(ref("Employment")),
                        "suspensions": array(ref("Suspension")),
                    }
                ),
            )
        },
        "/v1/admin/people/{ssn}/contributions": {
            "post": op(
                "Record a month's contribution (409 in a suspended month)",
                a,
                security=ADMIN,
                params=[SSN_PATH],
                body=obj(
                    {"month": MONTH, "employer_part": FEN, "individual_part": FEN}, ("month",)
                ),
                ok=obj({"month": MONTH, "created": BOOL}),
                status="201",
            ),
            "get": op(
                "Payment notice of a person: paid, missing and suspended months",
                a,
                security=ADMIN,
                params=[SSN_PATH, FROM_MONTH, TO_MONTH, FORMAT],
                ok=ref("PersonNotice"),
                csv=True,
            ),
        },
        "/v1/admin/people/{ssn}/suspension": {
            "post": op(
                "Declare a suspension of insurance from a month (at the counter)",
                a,
                security=ADMIN,
                params=[SSN_PATH],
                body=MONTH_BODY,
                ok={"type": "object"},
                status="201",
            )
        },
        "/v1/admin/people/{ssn}/resumption": {
            "post": op(
                "End the open suspension: contributions accepted again from a month",
                a,
                security=ADMIN,
                params=[SSN_PATH],
                body=MONTH_BODY,
                ok=obj({"ssn": SSN, "suspensions": array(ref("Suspension"))}),
            )
        },
        "/v1/admin/people/{ssn}/eligibility": {
            "get": op(
                "Covered for pooled-fund reimbursement on a date, with the reason",
                a,
                security=ADMIN,
                params=[SSN_PATH, _param("date", "query", DATE, "default: today")],
                ok=ref("Eligibility"),
            )
        },
        "/v1/admin/people/{ssn}/password-reset": {
            "post": op(
                "Reset the self-service password to the first password of the card "
                "(the ID card is checked against the card); unlocks the login",
                a,
                security=ADMIN,
                params=[SSN_PATH],
                body=obj({"pan": PAN}),
                ok=obj({"ssn": SSN, "status": STR, "must_change_password": BOOL}),
            )
        },
        "/v1/admin/accounts/{account_id}/freeze": {
            "post": op(
                "Freeze an account (its cards answer 62)",
                a,
                security=ADMIN,
                params=[ACCOUNT_PATH],
                ok=STATUS_ONLY,
            )
        },
        "/v1/admin/accounts/{account_id}/unfreeze": {
            "post": op(
                "Unfreeze an account", a, security=ADMIN, params=[ACCOUNT_PATH], ok=STATUS_ONLY
            )
        },
        "/v1/admin/accounts/{account_id}/statement": {
            "get": op(
                "Statement: allocation and consumption records, newest first",
                a,
                security=ADMIN,
                params=[ACCOUNT_PATH, LIMIT, CURSOR_PARAM, FORMAT],
                ok=STATEMENT_PAGE,
                csv=True,
            )
        },
        # Operator: cards ------------------------------------------------------------------
        "/v1/admin/cards": {
            "post": op(
                "Issue a card (a generated PIN is returned once)",
                a,
                security=ADMIN,
                body=obj({"ssn": SSN, "pin": PIN, "pan": PAN, "expires_on": DATE}, ("ssn",)),
                ok=ref("IssuedCard"),
                status="201",
            )
        },
        "/v1/admin/cards/{pan}": {
            "get": op(
                "A card and its account",
                a,
                security=ADMIN,
                params=[PAN_PATH],
                ok=obj(
                    {
                        "pan": PAN,
                        "account_id": INT,
                        "status": {"enum": ["active", "lost", "replaced"]},
                        "expires_on": DATE,
                        "pin_locked": BOOL,
                        "pin_failures": INT,
                        "account_status": STR,
                        "balance": FEN,
                    }
                ),
            )
        },
        "/v1/admin/cards/{pan}/report-lost": {
            "post": op(
                "Report the card lost (answered 41)",
                a,
                security=ADMIN,
                params=[PAN_PATH],
                ok=STATUS_ONLY,
            )
        },
        "/v1/admin/cards/{pan}/pin-reset": {
            "post": op(
                "Reset a forgotten PIN after the holder's ID number is checked; clears "
                "the PIN lockout",
                a,
                security=ADMIN,
                params=[PAN_PATH],
                body=obj({"ssn": SSN, "new_pin": PIN}),
                ok=STATUS_ONLY,
            )
        },
        "/v1/admin/cards/{pan}/replace": {
            "post": op(
                "Replacement card: new PAN on the same account and balance; the old card "
                "becomes 'replaced' (answered 41)",
                a,
                security=ADMIN,
                params=[PAN_PATH],
                body=obj({"ssn": SSN, "pin": PIN}, ("ssn",)),
                ok=obj(
                    {
                        "pan": PAN,
                        "account_id": INT,
                        "expires_on": DATE,
                        "replaces": PAN,
                        "pin": PIN,
                    },
                    ("pan", "account_id", "expires_on", "replaces"),
                ),
                status="201",
            )
        },
        # Operator: merchants and terminals ----------------------------------------------
        "/v1/admin/merchants": {
            "post": op(
                "Register a designated merchant with its designation period",
                a,
                security=ADMIN,
                body=obj(
                    {
                        "name": STR,
                        "kind": {"enum": ["pharmacy", "hospital"]},
                        "designated_from": DATE,
                        "designated_until": DATE,
                        "merchant_id": MERCHANT_ID,
                    },
                    ("name", "kind", "designated_from", "designated_until"),
                ),
                ok=ref("Merchant"),
                status="201",
            )
        },
        "/v1/admin/merchants/{merchant_id}": {
            "get": op("A merchant", a, security=ADMIN, params=[MERCHANT_PATH], ok=ref("Merchant"))
        },
        "/v1/admin/merchants/{merchant_id}/designation": {
            "post": op(
                "Renew (or change) the designation period",
                a,
                security=ADMIN,
                params=[MERCHANT_PATH],
                body=obj(
                    {"designated_from": DATE, "designated_until": DATE}, ("designated_until",)
                ),
                ok=ref("Merchant"),
            )
        },
        "/v1/admin/merchants/{merchant_id}/suspend": {
            "post": op(
                "Suspend the designation (its terminals are answered 03)",
                a,
                security=ADMIN,
                params=[MERCHANT_PATH],
                ok=ref("Merchant"),
            )
        },
        "/v1/admin/merchants/{merchant_id}/reinstate": {
            "post": op(
                "Lift a suspension",
                a,
                security=ADMIN,
                params=[MERCHANT_PATH],
                ok=ref("Merchant"),
            )
        },
        "/v1/admin/terminals": {
            "post": op(
                "Register a terminal; its keys are returned once",
                a,
                security=ADMIN,
                body=obj(
                    {"merchant_id": MERCHANT_ID, "terminal_id": TERMINAL_ID}, ("merchant_id",)
                ),
                ok=ref("TerminalKeys"),
                status="201",
            )
        },
        "/v1/admin/terminals/{terminal_id}/disable": {
            "post": op(
                "Disable a terminal (HTTP 403 to it)",
                a,
                security=ADMIN,
                params=[TERMINAL_PATH],
                ok=STATUS_ONLY,
            )
        },
        "/v1/admin/terminals/{terminal_id}/enable": {
            "post": op(
                "Enable a terminal", a, security=ADMIN, params=[TERMINAL_PATH], ok=STATUS_ONLY
            )
        },
        "/v1/admin/terminals/{terminal_id}/rekey": {
            "post": op(
                "New keys, returned once; the old keys stop working at once",
                a,
                security=ADMIN,
                params=[TERMINAL_PATH],
                ok=ref("TerminalKeys"),
            )
        },
        "/v1/admin/settlement": {
            "get": op(
                "What each merchant is owed for a day",
                a,
                security=ADMIN,
                params=[
                    {**_param("date", "query", DATE), "required": True},
                    _param("merchant_id", "query", MERCHANT_ID),
                    FORMAT,
                ],
                ok=obj({"date": DATE, "merchants": array({"type": "object"})}),
                csv=True,
            )
        },
        # Operator: settlement split (DESIGN §10) -------------------------------------------
        "/v1/admin/catalogue": {
            "post": op(
                "Load catalogue items (add or replace by code), all or nothing: "
                '{"items": [{code, name, category, self_pay_bp}]} or a text/csv file',
                a,
                security=ADMIN,
                body=obj({"items": array({"type": "object"})}),
                ok=obj({"loaded": INT}),
                status="201",
                errors=("400", "401"),
            ),
            "get": op(
                "The catalogue", a, security=ADMIN,
                ok=obj({"items": array({"type": "object"})}), errors=("401",),
            ),
        },
        "/v1/admin/policies": {
            "post": op(
                "Load policies per merchant kind and year, all or nothing: "
                '{"policies": [{merchant_kind, year, deductible, fund_ratio_bp, annual_cap, '
                "daily_amount_limit, daily_count_limit}]} or a text/csv file",
                a,
                security=ADMIN,
                body=obj({"policies": array({"type": "object"})}),
                ok=obj({"loaded": INT}),
                status="201",
                errors=("400", "401"),
            ),
            "get": op(
                "The policies", a, security=ADMIN,
                params=[_param("year", "query", INT)],
                ok=obj({"policies": array({"type": "object"})}), errors=("400", "401"),
            ),
        },
        "/v1/admin/reports/fund-liability": {
            "get": op(
                "What the pooled fund owes each merchant per day",
                a,
                security=ADMIN,
                params=[
                    {**_param("from", "query", DATE), "required": True},
                    _param("until", "query", DATE),
                    _param("merchant_id", "query", MERCHANT_ID),
                    FORMAT,
                ],
                ok=obj({"from": DATE, "until": DATE, "merchants": array({"type": "object"})}),
                csv=True,
            )
        },
        # Operator: employers, employments ------------------------------------------------
        "/v1/admin/employers": {
            "post": op(
                "Register an employer (code generated when not given)",
                a,
                security=ADMIN,
                body=obj({"name": STR, "employer_id": EMPLOYER_ID}, ("name",)),
                ok=obj({"employer_id": EMPLOYER_ID, "name": STR}),
                status="201",
            )
        },
        "/v1/admin/employers/{employer_id}": {
            "get": op(
                "An employer",
                a,
                security=ADMIN,
                params=[EMPLOYER_PATH],
                ok=obj({"employer_id": EMPLOYER_ID, "name": STR}),
            )
        },
        "/v1/admin/employers/{employer_id}/payment-notice": {
            "get": op(
                "Payment notice of an employer: per employee, paid and missing months",
                a,
                security=ADMIN,
                params=[EMPLOYER_PATH, FROM_MONTH, TO_MONTH, FORMAT],
                ok=ref("EmployerNotice"),
                csv=True,
            )
        },
        "/v1/admin/employments": {
            "post": op(
                "Register an employment (late when more than 30 days after hiring); "
                "without employer_id, flexible employment",
                a,
                security=ADMIN,
                body=obj(
                    {"ssn": SSN, "employer_id": EMPLOYER_ID, "hired_on": DATE},
                    ("ssn", "hired_on"),
                ),
                ok=ref("Employment"),
                status="201",
            )
        },
        "/v1/admin/employments/{employment_id}/end": {
            "post": op(
                "End an employment",
                a,
                security=ADMIN,
                params=[_param("employment_id", "path", INT)],
                body=obj({"ended_on": DATE}),
                ok=ref("Employment"),
            )
        },
        "/v1/admin/reports/late-registrations": {
            "get": op(
                "Registrations made more than 30 days after hiring",
                a,
                security=ADMIN,
                params=[
                    _param("from", "query", DATE, "registration date (default: month start)"),
                    _param("to", "query", DATE, "registration date (default: month end)"),
                    _param("employer_id", "query", EMPLOYER_ID),
                    FORMAT,
                ],
                ok=obj(
                    {
                        "from": DATE,
                        "to": DATE,
                        "deadline_days": INT,
                        "registrations": array(ref("Employment")),
                    }
                ),
                csv=True,
            )
        },
        # Operator: allocation and audit ---------------------------------------------------
        "/v1/admin/allocations": {
            "post": op(
                "Allocation run for a month: credit every individual account from the "
                "month's contributions (individual part + 30 % of the employer part); "
                "idempotent per person and month",
                a,
                security=ADMIN,
                body=obj({"month": MONTH}),
                ok=obj(
                    {
                        **ALLOCATION_SUMMARY_PROPS,
                        "this_run": obj({"persons": INT, "amount": FEN, "batches": INT}),
                    }
                ),
            )
        },
        "/v1/admin/allocations/{month}": {
            "get": op(
                "Allocation report of a month: summary and per-person lines",
                a,
                security=ADMIN,
                params=[_param("month", "path", MONTH), LIMIT, CURSOR_PARAM, FORMAT],
                ok=obj(
                    {
                        **ALLOCATION_SUMMARY_PROPS,
                        "lines": array(
                            obj(
                                {
                                    "account_id": INT,
                                    "ssn": SSN,
                                    "name": STR,
                                    "employer_part": FEN,
                                    "individual_part": FEN,
                                    "amount": FEN,
                                    "allocated_at": TIME,
                                }
                            )
                        ),
                        "next_cursor": CURSOR,
                    }
                ),
                csv=True,
            )
        },
        "/v1/admin/audit": {
            "get": op(
                "The audit trail, newest first (never a PIN, password, key or token)",
                a,
                security=ADMIN,
                params=[
                    _param("subject_kind", "query", STR),
                    _param("subject_id", "query", STR),
                    _param("action", "query", STR),
                    LIMIT,
                    CURSOR_PARAM,
                ],
                ok=obj(
                    {
                        "entries": array(
                            obj(
                                {
                                    "audit_id": INT,
                                    "time": TIME,
                                    "actor_kind": {"enum": ["operator", "cardholder", "system"]},
                                    "actor_id": STR,
                                    "remote_addr": nullable(STR),
                                    "request_id": nullable(STR),
                                    "action": STR,
                                    "subject_kind": STR,
                                    "subject_id": STR,
                                    "details": {"type": "object"},
                                }
                            )
                        ),
                        "next_cursor": CURSOR,
                    }
                ),
            )
        },
        # Cardholder ---------------------------------------------------------------------
        "/v1/me/login": {
            "post": op(
                "Log in with the ID number and password; the first password is the last 6 "
                "digits of the card number and must be changed first. Locked for 30 minutes "
                "after 5 wrong passwords in a row (or until a counter reset)",
                m,
                security=None,
                body=obj({"ssn": SSN, "password": PASSWORD}),
                ok=obj(
                    {
                        "token": STR,
                        "token_type": {"const": "Bearer"},
                        "expires_in": INT,
                        "must_change_password": BOOL,
                    }
                ),
                errors=("400", "401", "403"),
            )
        },
        "/v1/me/password": {
            "post": op(
                "Change the password (old password required)",
                m,
                security=ME,
                body=obj({"old_password": PASSWORD, "new_password": PASSWORD}),
                ok=STATUS_ONLY,
                errors=("400", "401", "403"),
            )
        },
        "/v1/me/logout": {
            "post": op(
                "End this session",
                m,
                security=ME,
                ok=STATUS_ONLY,
                errors=("401",),
            )
        },
        "/v1/me": {
            "get": op(
                "Who I am: name, birth date, account, cards",
                m,
                security=ME,
                ok=obj(
                    {
                        "ssn": SSN,
                        "name": STR,
                        "birth_date": DATE,
                        "sex": {"enum": ["male", "female"]},
                        "account": obj({"balance": FEN, "status": STR}),
                        "cards": array(
                            obj(
                                {
                                    "card_id": INT,
                                    "pan": MASKED_PAN,
                                    "status": STR,
                                    "expires_on": DATE,
                                    "expired": BOOL,
                                    "pin_locked": BOOL,
                                }
                            )
                        ),
                    }
                ),
                errors=("401", "403"),
            )
        },
        "/v1/me/balance": {
            "get": op(
                "Individual account balance",
                m,
                security=ME,
                ok=obj({"balance": FEN, "currency": {"const": "CNY"}, "account_status": STR}),
                errors=("401", "403"),
            )
        },
        "/v1/me/statement": {
            "get": op(
                "Statement: allocation and consumption records, newest first",
                m,
                security=ME,
                params=[LIMIT, CURSOR_PARAM, FORMAT],
                ok=STATEMENT_PAGE,
                csv=True,
                errors=("400", "401", "403"),
            )
        },
        "/v1/me/contributions": {
            "get": op(
                "My contributions: paid, missing and suspended months",
                m,
                security=ME,
                params=[FROM_MONTH, TO_MONTH, FORMAT],
                ok=ref("PersonNotice"),
                csv=True,
                errors=("400", "401", "403"),
            )
        },
        "/v1/me/coverage": {
            "get": op(
                "Am I covered for pooled-fund reimbursement on a date, and why",
                m,
                security=ME,
                params=[_param("date", "query", DATE, "default: today")],
                ok=ref("Eligibility"),
                errors=("400", "401", "403"),
            )
        },
        "/v1/me/cards/{card_id}/pin": {
            "post": op(
                "Change the PIN: the old PIN is required (a wrong one counts toward the "
                "lockout) and the new one must not be trivially weak",
                m,
                security=ME,
                params=[CARD_PATH],
                body=obj({"old_pin": PIN, "new_pin": PIN}),
                ok=STATUS_ONLY,
                errors=("400", "401", "403", "404", "409"),
            )
        },
        "/v1/me/cards/{card_id}/report-lost": {
            "post": op(
                "Report my card lost",
                m,
                security=ME,
                params=[CARD_PATH],
                ok=obj({"card_id": INT, "pan": MASKED_PAN, "status": STR}),
                errors=("401", "403", "404", "409"),
            )
        },
        "/v1/me/suspension": {
            "post": op(
                "Declare a suspension of my insurance from a month on",
                m,
                security=ME,
                body=MONTH_BODY,
                ok=obj(
                    {
                        "ssn": SSN,
                        "from_month": MONTH,
                        "declared_at": TIME,
                        "contributions_accepted_until": MONTH,
                        "suspensions": array(ref("Suspension")),
                        "note": STR,
                    }
                ),
                status="201",
                errors=("400", "401", "403", "409"),
            )
        },
        "/v1/me/flexible-employment": {
            "post": op(
                "Register myself as flexibly employed",
                m,
                security=ME,
                body=obj({"started_on": DATE}),
                ok=ref("Employment"),
                status="201",
                errors=("400", "401", "403", "409"),
            )
        },
    }


def document() -> dict[str, Any]:
    return {
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
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "cardholderSession": {"type": "http", "scheme": "bearer"},
                "terminalSignature": {
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


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(document())
