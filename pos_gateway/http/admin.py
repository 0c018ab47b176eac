"""Operator API under /v1/admin/ (bearer POS_ADMIN_TOKEN, checked for the whole
sub-application by http/roles.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from msgspec import UNSET, UnsetType

from pos_gateway.domain.cards import pan_well_formed
from pos_gateway.errors import InvalidInput
from pos_gateway.http.actors import operator_actor
from pos_gateway.http.answers import (
    Card,
    ContributionCorrected,
    ContributionRecorded,
    IssuedCard,
    Merchant,
    PersonRegistered,
    ReplacementCard,
    Settlement,
    StatementPage,
    Status,
    TerminalKeys,
    render,
)
from pos_gateway.http.api import operation
from pos_gateway.http.bodies import (
    CardIssue,
    CardReplacement,
    ContributionCorrection,
    ContributionRecord,
    DesignationRenewal,
    MerchantRegistration,
    PersonRegistration,
    PinReset,
    TerminalRegistration,
    as_month,
    parse_body,
)
from pos_gateway.http.render import (
    SETTLEMENT_COLUMNS,
    STATEMENT_COLUMNS,
    csv_response,
    path_int,
    query_int,
    wants_csv,
)
from pos_gateway.http.schemas import (
    ACCOUNT_PATH,
    CURSOR_PARAM,
    DATE,
    FORMAT,
    LIMIT,
    MERCHANT_ID,
    MERCHANT_PATH,
    MONTH,
    PAN_PATH,
    SSN_PATH,
    TERMINAL_PATH,
    param,
)
from pos_gateway.http.state import SERVICES
from pos_gateway.http.validation import (
    MERCHANT_ID_RE,
    TERMINAL_ID_RE,
    field_date,
    field_month,
)
from pos_gateway.services import reports
from pos_gateway.services.admin import AdminService, RegisteredTerminal

routes = web.RouteTableDef()


def _admin(request: web.Request) -> AdminService:
    return request.config_dict[SERVICES].admin


def _pan(request: web.Request) -> str:
    pan = request.match_info["pan"]
    if not pan_well_formed(pan):
        raise InvalidInput("pan must be 16 to 19 digits", code="invalid_pan")
    return pan


def _terminal_id(request: web.Request) -> str:
    terminal_id = request.match_info["terminal_id"]
    if not TERMINAL_ID_RE.fullmatch(terminal_id):
        raise InvalidInput("terminal_id must be 8 characters [0-9A-Z]")
    return terminal_id


def _merchant_id(request: web.Request) -> str:
    merchant_id = request.match_info["merchant_id"]
    if not MERCHANT_ID_RE.fullmatch(merchant_id):
        raise InvalidInput("merchant_id must be 15 characters [0-9A-Z]")
    return merchant_id


@routes.post("/v1/admin/people")
@operation(
    "Register a person and their individual account (idempotent on the ssn)",
    "operator",
    body=PersonRegistration,
    ok=PersonRegistered,
    status="201",
)
async def register_person(request: web.Request) -> web.Response:
    body = await parse_body(request, PersonRegistration)
    result = await _admin(request).register_person(
        body.ssn,
        body.name,
        body.opening_allocation,
        actor=operator_actor(request),
    )
    return render(result, PersonRegistered, status=201 if result["created"] else 200)


@routes.post("/v1/admin/people/{ssn}/contributions")
@operation(
    "Record a month's contribution (409 in a suspended month, or when the month is "
    "recorded with other amounts: see .../correction)",
    "operator",
    params=[SSN_PATH],
    body=ContributionRecord,
    ok=ContributionRecorded,
    status="201",
)
async def record_contribution(request: web.Request) -> web.Response:
    body = await parse_body(request, ContributionRecord)
    month = as_month(body.month)
    created = await _admin(request).record_contribution(
        request.match_info["ssn"],
        month,
        body.employer_part,
        body.individual_part,
        actor=operator_actor(request),
    )
    return render(
        {"month": f"{month:%Y-%m}", "created": created},
        ContributionRecorded,
        status=201 if created else 200,
    )


@routes.post("/v1/admin/people/{ssn}/contributions/{month}/correction")
@operation(
    "Correct a recorded month's amounts, with a reason (audited; 409 once the month is allocated)",
    "operator",
    params=[SSN_PATH, param("month", "path", MONTH)],
    body=ContributionCorrection,
    ok=ContributionCorrected,
)
async def correct_contribution(request: web.Request) -> web.Response:
    body = await parse_body(request, ContributionCorrection)
    result = await _admin(request).correct_contribution(
        request.match_info["ssn"],
        field_month(dict(request.match_info), "month"),
        body.employer_part,
        body.individual_part,
        body.reason,
        actor=operator_actor(request),
    )
    return render(result, ContributionCorrected)


@routes.post("/v1/admin/accounts/{account_id}/freeze")
@operation("Freeze an account (its cards answer 62)", "operator", params=[ACCOUNT_PATH], ok=Status)
async def freeze_account(request: web.Request) -> web.Response:
    await _admin(request).set_account_frozen(
        path_int(request, "account_id"), True, actor=operator_actor(request)
    )
    return render({"status": "frozen"}, Status)


@routes.post("/v1/admin/accounts/{account_id}/unfreeze")
@operation("Unfreeze an account", "operator", params=[ACCOUNT_PATH], ok=Status)
async def unfreeze_account(request: web.Request) -> web.Response:
    await _admin(request).set_account_frozen(
        path_int(request, "account_id"), False, actor=operator_actor(request)
    )
    return render({"status": "active"}, Status)


@routes.post("/v1/admin/cards")
@operation(
    "Issue a card (a generated PIN is returned once)",
    "operator",
    body=CardIssue,
    ok=IssuedCard,
    status="201",
)
async def issue_card(request: web.Request) -> web.Response:
    body = await parse_body(request, CardIssue)
    card = await _admin(request).issue_card(
        body.ssn,
        pin=body.pin,
        pan=body.pan,
        expires_on=body.expires_on,
        actor=operator_actor(request),
    )
    issued = IssuedCard(
        pan=card.pan,
        account_id=card.account_id,
        expires_on=card.expires_on.isoformat(),
        pin=_once(card.pin),  # generated: shown this once, for the PIN mailer
        password=_once(card.password),  # first self-service password, shown this once
    )
    return render(issued, IssuedCard, status=201)


@routes.get("/v1/admin/cards/{pan}")
@operation(
    "A card and its account",
    "operator",
    params=[PAN_PATH],
    ok=Card,
)
async def get_card(request: web.Request) -> web.Response:
    row = await _admin(request).card(_pan(request))
    return render(
        {
            "pan": row["pan"],
            "account_id": row["account_id"],
            "status": row["status"],
            "expires_on": row["expires_on"].isoformat(),
            "pin_locked": row["pin_failures"] >= 3,
            "pin_failures": row["pin_failures"],
            "account_status": row["account_status"],
            "balance": row["balance"],
        },
        Card,
    )


@routes.post("/v1/admin/cards/{pan}/report-lost")
@operation("Report the card lost (answered 41)", "operator", params=[PAN_PATH], ok=Status)
async def report_lost(request: web.Request) -> web.Response:
    await _admin(request).report_lost(_pan(request), actor=operator_actor(request))
    return render({"status": "lost"}, Status)


@routes.post("/v1/admin/cards/{pan}/pin-reset")
@operation(
    "Reset a forgotten PIN after the holder's ID number is checked; clears the PIN lockout",
    "operator",
    params=[PAN_PATH],
    body=PinReset,
    ok=Status,
)
async def reset_pin(request: web.Request) -> web.Response:
    body = await parse_body(request, PinReset)
    await _admin(request).reset_pin(
        _pan(request),
        body.ssn,
        body.new_pin,
        actor=operator_actor(request),
    )
    return render({"status": "pin_reset"}, Status)


@routes.post("/v1/admin/merchants")
@operation(
    "Register a designated merchant with its designation period",
    "operator",
    body=MerchantRegistration,
    ok=Merchant,
    status="201",
)
async def register_merchant(request: web.Request) -> web.Response:
    body = await parse_body(request, MerchantRegistration)
    row = await _admin(request).register_merchant(
        body.name,
        body.kind,
        body.designated_from,
        body.designated_until,
        body.merchant_id,
        actor=operator_actor(request),
    )
    return render(_merchant_json(row), Merchant, status=201)


@routes.post("/v1/admin/terminals")
@operation(
    "Register a terminal; its keys are returned once",
    "operator",
    body=TerminalRegistration,
    ok=TerminalKeys,
    status="201",
)
async def register_terminal(request: web.Request) -> web.Response:
    body = await parse_body(request, TerminalRegistration)
    registered = await _admin(request).register_terminal(
        body.merchant_id, body.terminal_id, actor=operator_actor(request)
    )
    return render(_keys(registered), TerminalKeys, status=201)


@routes.post("/v1/admin/terminals/{terminal_id}/disable")
@operation("Disable a terminal (HTTP 403 to it)", "operator", params=[TERMINAL_PATH], ok=Status)
async def disable_terminal(request: web.Request) -> web.Response:
    await _admin(request).set_terminal_disabled(
        _terminal_id(request), True, actor=operator_actor(request)
    )
    return render({"status": "disabled"}, Status)


@routes.post("/v1/admin/terminals/{terminal_id}/enable")
@operation("Enable a terminal", "operator", params=[TERMINAL_PATH], ok=Status)
async def enable_terminal(request: web.Request) -> web.Response:
    await _admin(request).set_terminal_disabled(
        _terminal_id(request), False, actor=operator_actor(request)
    )
    return render({"status": "active"}, Status)


@routes.get("/v1/admin/accounts/{account_id}/statement")
@operation(
    "Statement: allocation and consumption records, newest first",
    "operator",
    params=[ACCOUNT_PATH, LIMIT, CURSOR_PARAM, FORMAT],
    ok=StatementPage,
    csv=True,
)
async def account_statement(request: web.Request) -> web.StreamResponse:
    """Keyset-paginated statement: ?limit=50&cursor=…&format=json|csv."""
    account_id = path_int(request, "account_id")
    page = await reports.statement(
        request.config_dict[SERVICES].pool,
        account_id,
        request.query.get("cursor"),
        query_int(request, "limit", 50),
    )
    if wants_csv(request):
        return csv_response(page.entries, STATEMENT_COLUMNS, f"statement-{account_id}.csv")
    return render({"entries": page.entries, "next_cursor": page.next_cursor}, StatementPage)


@routes.get("/v1/admin/settlement")
@operation(
    "What each merchant is owed for a day (default today, business time zone), with a totals row",
    "operator",
    params=[
        param("date", "query", DATE, "the day (default: today in POS_BUSINESS_TZ)"),
        param("merchant_id", "query", MERCHANT_ID),
        FORMAT,
    ],
    ok=Settlement,
    csv=True,
)
async def settlement_report(request: web.Request) -> web.StreamResponse:
    """Per merchant and day: ?date=YYYY-MM-DD[&merchant_id=…]&format=json|csv. The day
    defaults to today in the business time zone; a totals row ends the report."""
    day = field_date(dict(request.query), "date", required=False) or _admin(request).today()
    merchant_id = request.query.get("merchant_id")
    rows = await reports.settlement(request.config_dict[SERVICES].pool, day, merchant_id)
    totals = reports.settlement_totals(rows)
    if wants_csv(request):
        total_row = {"local_date": day.isoformat(), "merchant_id": "TOTAL", **totals}
        return csv_response(
            [*rows, total_row], SETTLEMENT_COLUMNS, f"settlement-{day.isoformat()}.csv"
        )
    return render({"date": day.isoformat(), "merchants": rows, "totals": totals}, Settlement)


# Counter services ----------------------------------------------------------------------


@routes.post("/v1/admin/cards/{pan}/replace")
@operation(
    "Replacement card: new PAN on the same account and balance; the old card "
    "becomes 'replaced' (answered 41)",
    "operator",
    params=[PAN_PATH],
    body=CardReplacement,
    ok=ReplacementCard,
    status="201",
)
async def replace_card(request: web.Request) -> web.Response:
    """New card (new PAN) on the same account after the holder's ID number is checked;
    the old card answers 41 from now on. Without `pin`, one is generated and shown once."""
    body = await parse_body(request, CardReplacement)
    card = await _admin(request).replace_card(
        _pan(request),
        body.ssn,
        pin=body.pin,
        actor=operator_actor(request),
    )
    replacement = ReplacementCard(
        pan=card.pan,
        account_id=card.account_id,
        expires_on=card.expires_on.isoformat(),
        replaces=request.match_info["pan"],
        pin=_once(card.pin),
    )
    return render(replacement, ReplacementCard, status=201)


@routes.get("/v1/admin/merchants/{merchant_id}")
@operation("A merchant", "operator", params=[MERCHANT_PATH], ok=Merchant)
async def get_merchant(request: web.Request) -> web.Response:
    row = await _admin(request).merchant(_merchant_id(request))
    return render(_merchant_json(row), Merchant)


@routes.post("/v1/admin/merchants/{merchant_id}/designation")
@operation(
    "Renew (or change) the designation period",
    "operator",
    params=[MERCHANT_PATH],
    body=DesignationRenewal,
    ok=Merchant,
)
async def renew_designation(request: web.Request) -> web.Response:
    """Renew (or change) the designation period: {designated_until[, designated_from]}."""
    body = await parse_body(request, DesignationRenewal)
    row = await _admin(request).renew_designation(
        _merchant_id(request),
        body.designated_until,
        body.designated_from,
        actor=operator_actor(request),
    )
    return render(_merchant_json(row), Merchant)


@routes.post("/v1/admin/merchants/{merchant_id}/suspend")
@operation(
    "Suspend the designation (its terminals are answered 03)",
    "operator",
    params=[MERCHANT_PATH],
    ok=Merchant,
)
async def suspend_merchant(request: web.Request) -> web.Response:
    row = await _admin(request).set_merchant_suspended(
        _merchant_id(request), True, actor=operator_actor(request)
    )
    return render(_merchant_json(row), Merchant)


@routes.post("/v1/admin/merchants/{merchant_id}/reinstate")
@operation("Lift a suspension", "operator", params=[MERCHANT_PATH], ok=Merchant)
async def reinstate_merchant(request: web.Request) -> web.Response:
    row = await _admin(request).set_merchant_suspended(
        _merchant_id(request), False, actor=operator_actor(request)
    )
    return render(_merchant_json(row), Merchant)


@routes.post("/v1/admin/terminals/{terminal_id}/rekey")
@operation(
    "New keys, returned once; the old keys stop working at once",
    "operator",
    params=[TERMINAL_PATH],
    ok=TerminalKeys,
)
async def rekey_terminal(request: web.Request) -> web.Response:
    """New MAC and PIN keys, returned once; the old keys stop working at once."""
    rekeyed = await _admin(request).rekey_terminal(
        _terminal_id(request), actor=operator_actor(request)
    )
    return render(_keys(rekeyed), TerminalKeys)


def _once(secret: str | None) -> str | UnsetType:
    """A secret shown only when it was just generated; otherwise left out of the answer."""
    return UNSET if secret is None else secret


def _keys(registered: RegisteredTerminal) -> TerminalKeys:
    # Returned once; the gateway keeps them only wrapped under the master key.
    return TerminalKeys(
        terminal_id=registered.terminal_id,
        merchant_id=registered.merchant_id,
        mac_key=registered.keys.mac_key.hex(),
        pin_key=registered.keys.pin_key.hex(),
    )


def _merchant_json(row: Any) -> dict[str, Any]:
    return {
        "merchant_id": row["merchant_id"],
        "name": row["name"],
        "kind": row["kind"],
        "designated_from": row["designated_from"].isoformat(),
        "designated_until": row["designated_until"].isoformat(),
        "suspended": row["suspended"],
    }
