"""Cardholder API under /v1/me/…: log in with the ID number and password, then a bearer
token (returned once; only its hash is stored), checked for the whole sub-application by
http/roles.py. Until the first password is changed, only the password change (and logout)
are allowed."""

from __future__ import annotations

from aiohttp import web

from pos_gateway.errors import InvalidInput
from pos_gateway.http.actors import cardholder_actor
from pos_gateway.http.answers import (
    Balance,
    Eligibility,
    Employment,
    LoginAnswer,
    LostCard,
    PersonNotice,
    Profile,
    StatementPage,
    Status,
    SuspensionDeclared,
    render,
)
from pos_gateway.http.api import operation
from pos_gateway.http.bodies import (
    FlexibleEmployment,
    FromMonth,
    Login,
    PasswordChange,
    PinChange,
    as_month,
    parse_body,
)
from pos_gateway.http.insurance_state import INSURANCE
from pos_gateway.http.render import STATEMENT_COLUMNS, csv_response, query_int, wants_csv
from pos_gateway.http.roles import SESSION
from pos_gateway.http.schemas import (
    CARD_PATH,
    CURSOR_PARAM,
    DATE,
    FORMAT,
    FROM_MONTH,
    LIMIT,
    TO_MONTH,
    param,
)
from pos_gateway.http.validation import field_optional_date, month_span
from pos_gateway.services.cardholder import CardholderService, Session
from pos_gateway.services.insurance import InsuranceService

routes = web.RouteTableDef()
CONTRIBUTION_COLUMNS = ("month", "status", "employer_part", "individual_part", "payer")


def _cardholder_service(request: web.Request) -> CardholderService:
    return request.config_dict[INSURANCE].cardholder


def _insurance(request: web.Request) -> InsuranceService:
    return request.config_dict[INSURANCE].insurance


def _session(request: web.Request) -> Session:
    return request[SESSION]


def _card_id(request: web.Request) -> int:
    raw = request.match_info["card_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise InvalidInput("card_id must be a positive integer")
    return int(raw)


@routes.post("/v1/me/login")
@operation(
    "Log in with the ID number and password; the first password is the last 6 "
    "digits of the card number and must be changed first. Locked for 30 minutes "
    "after 5 wrong passwords in a row (or until a counter reset)",
    "cardholder",
    body=Login,
    ok=LoginAnswer,
    errors=("400", "401", "403"),
)
async def login(request: web.Request) -> web.Response:
    """{ssn, password} -> a bearer token, shown once."""
    body = await parse_body(request, Login)
    result = await _cardholder_service(request).login(
        body.ssn, body.password, actor=cardholder_actor(request, body.ssn[:18])
    )
    answer = LoginAnswer(
        token=result.token,
        expires_in=result.expires_in,
        must_change_password=result.must_change_password,
    )
    return render(answer, LoginAnswer)


@routes.post("/v1/me/password")
@operation(
    "Change the password (old password required)",
    "cardholder",
    body=PasswordChange,
    ok=Status,
    errors=("400", "401", "403"),
)
async def change_password(request: web.Request) -> web.Response:
    body = await parse_body(request, PasswordChange)
    session = _session(request)
    await _cardholder_service(request).change_password(
        session, body.old_password, body.new_password, actor=cardholder_actor(request, session.ssn)
    )
    return render({"status": "password_changed"}, Status)


@routes.post("/v1/me/logout")
@operation("End this session", "cardholder", ok=Status, errors=("401",))
async def logout(request: web.Request) -> web.Response:
    session = _session(request)
    await _cardholder_service(request).logout(session, actor=cardholder_actor(request, session.ssn))
    return render({"status": "logged_out"}, Status)


@routes.get("/v1/me")
@operation(
    "Who I am: name, birth date, account, cards",
    "cardholder",
    ok=Profile,
    errors=("401", "403"),
)
async def profile(request: web.Request) -> web.Response:
    return render(await _cardholder_service(request).profile(_session(request).ssn), Profile)


@routes.get("/v1/me/balance")
@operation(
    "Individual account balance",
    "cardholder",
    ok=Balance,
    errors=("401", "403"),
)
async def balance(request: web.Request) -> web.Response:
    return render(await _cardholder_service(request).balance(_session(request).ssn), Balance)


@routes.get("/v1/me/statement")
@operation(
    "Statement: allocation and consumption records, newest first",
    "cardholder",
    params=[LIMIT, CURSOR_PARAM, FORMAT],
    ok=StatementPage,
    csv=True,
    errors=("400", "401", "403"),
)
async def statement(request: web.Request) -> web.StreamResponse:
    """Allocation and consumption records, newest first: ?limit=&cursor=&format=json|csv."""
    page = await _cardholder_service(request).statement(
        _session(request).ssn, request.query.get("cursor"), query_int(request, "limit", 50)
    )
    if wants_csv(request):
        return csv_response(page.entries, STATEMENT_COLUMNS, "statement.csv")
    return render({"entries": page.entries, "next_cursor": page.next_cursor}, StatementPage)


@routes.get("/v1/me/contributions")
@operation(
    "My contributions: paid, missing and suspended months",
    "cardholder",
    params=[FROM_MONTH, TO_MONTH, FORMAT],
    ok=PersonNotice,
    csv=True,
    errors=("400", "401", "403"),
)
async def contributions(request: web.Request) -> web.StreamResponse:
    """What was paid for which months and what is missing: ?from=&to=&format=json|csv."""
    insurance = _insurance(request)
    months = insurance.month_range(*month_span(request.query))
    notice = await insurance.person_notice(_session(request).ssn, months)
    if wants_csv(request):
        return csv_response(notice["months"], CONTRIBUTION_COLUMNS, "contributions.csv")
    return render(notice, PersonNotice)


@routes.get("/v1/me/coverage")
@operation(
    "Am I covered for pooled-fund reimbursement on a date, and why",
    "cardholder",
    params=[param("date", "query", DATE, "default: today")],
    ok=Eligibility,
    errors=("400", "401", "403"),
)
async def coverage(request: web.Request) -> web.Response:
    """Covered for pooled-fund reimbursement on ?date= (default today), and why."""
    day = field_optional_date(request.query, "date")
    return render(await _insurance(request).eligibility(_session(request).ssn, day), Eligibility)


@routes.post("/v1/me/cards/{card_id}/pin")
@operation(
    "Change the PIN: the old PIN is required (a wrong one counts toward the "
    "lockout) and the new one must not be trivially weak",
    "cardholder",
    params=[CARD_PATH],
    body=PinChange,
    ok=Status,
    errors=("400", "401", "403", "404", "409"),
)
async def change_pin(request: web.Request) -> web.Response:
    body = await parse_body(request, PinChange)
    session = _session(request)
    await _cardholder_service(request).change_pin(
        session.ssn,
        _card_id(request),
        body.old_pin,
        body.new_pin,
        actor=cardholder_actor(request, session.ssn),
    )
    return render({"status": "pin_changed"}, Status)


@routes.post("/v1/me/cards/{card_id}/report-lost")
@operation(
    "Report my card lost",
    "cardholder",
    params=[CARD_PATH],
    ok=LostCard,
    errors=("401", "403", "404", "409"),
)
async def report_lost(request: web.Request) -> web.Response:
    session = _session(request)
    result = await _cardholder_service(request).report_lost(
        session.ssn, _card_id(request), actor=cardholder_actor(request, session.ssn)
    )
    return render(result, LostCard)


@routes.post("/v1/me/suspension")
@operation(
    "Declare a suspension of my insurance from a month on",
    "cardholder",
    body=FromMonth,
    ok=SuspensionDeclared,
    status="201",
    errors=("400", "401", "403", "409"),
)
async def declare_suspension(request: web.Request) -> web.Response:
    """Suspend insurance from {from_month: YYYY-MM} on: contributions stop from then."""
    body = await parse_body(request, FromMonth)
    session = _session(request)
    result = await _insurance(request).declare_suspension(
        session.ssn,
        as_month(body.from_month),
        actor=cardholder_actor(request, session.ssn),
    )
    return render(result, SuspensionDeclared, status=201)


@routes.post("/v1/me/flexible-employment")
@operation(
    "Register myself as flexibly employed",
    "cardholder",
    body=FlexibleEmployment,
    ok=Employment,
    status="201",
    errors=("400", "401", "403", "409"),
)
async def register_flexible_employment(request: web.Request) -> web.Response:
    """A flexibly employed person registers themselves: {started_on: YYYY-MM-DD}."""
    body = await parse_body(request, FlexibleEmployment)
    session = _session(request)
    result = await _insurance(request).register_employment(
        session.ssn,
        None,
        body.started_on,
        actor=cardholder_actor(request, session.ssn),
    )
    return render(result, Employment, status=201)
