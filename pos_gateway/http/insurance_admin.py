"""Operator API of the insurance side (/v1/admin/…): employers and employments,
contributions and payment notices, suspension, eligibility, the allocation run, counter
password reset, and the audit trail."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pos_gateway.domain.employment import USCC_RE
from pos_gateway.errors import InvalidInput
from pos_gateway.http.actors import operator_actor
from pos_gateway.http.answers import (
    AllocationReport,
    AllocationRunDone,
    AuditPage,
    Eligibility,
    Employer,
    EmployerNotice,
    Employment,
    LateRegistrations,
    PasswordReset,
    Person,
    PersonNotice,
    Resumed,
    SuspensionDeclared,
    render,
)
from pos_gateway.http.api import operation
from pos_gateway.http.bodies import (
    AllocationRun,
    CounterPasswordReset,
    EmployerRegistration,
    EmploymentEnd,
    EmploymentRegistration,
    FromMonth,
    as_month,
    parse_body,
)
from pos_gateway.http.insurance_state import INSURANCE
from pos_gateway.http.render import csv_response, path_int, query_int, wants_csv
from pos_gateway.http.schemas import (
    CURSOR_PARAM,
    DATE,
    EMPLOYER_ID,
    EMPLOYER_PATH,
    FORMAT,
    FROM_MONTH,
    INT,
    LIMIT,
    MONTH,
    SSN_PATH,
    STR,
    TO_MONTH,
    param,
)
from pos_gateway.http.state import SERVICES
from pos_gateway.http.validation import (
    field_month,
    field_optional_date,
    month_span,
)
from pos_gateway.services.audit_trail import audit_trail_page
from pos_gateway.services.cardholder import CardholderService
from pos_gateway.services.insurance import InsuranceService

routes = web.RouteTableDef()

NOTICE_COLUMNS = ("ssn", "name", "month", "status", "employer_part", "individual_part")
PERSON_NOTICE_COLUMNS = ("ssn", "month", "status", "employer_part", "individual_part", "payer")
EMPLOYMENT_COLUMNS = (
    "employment_id", "ssn", "name", "kind", "employer_id", "employer_name", "hired_on",
    "registered_on", "days_to_register", "late_registration", "ended_on", "registered_by",
)  # fmt: skip
ALLOCATION_COLUMNS = (
    "account_id", "ssn", "name", "employer_part", "individual_part", "amount", "allocated_at",
)  # fmt: skip
AUDIT_SUBJECTS = frozenset(
    {"person", "account", "card", "merchant", "terminal", "employer", "employment", "allocation",
     "operator", "catalogue", "policy"}
)  # fmt: skip


def _insurance(request: web.Request) -> InsuranceService:
    return request.config_dict[INSURANCE].insurance


def _cardholder(request: web.Request) -> CardholderService:
    return request.config_dict[INSURANCE].cardholder


def _ssn(request: web.Request) -> str:
    """Shape only; the service checks the GB 11643 check character."""
    ssn = request.match_info["ssn"]
    if len(ssn) != 18:
        raise InvalidInput("ssn must be an 18-character citizen ID number", code="invalid_ssn")
    return ssn


def _employer_id(request: web.Request) -> str:
    employer_id = request.match_info["employer_id"]
    if not USCC_RE.fullmatch(employer_id):
        raise InvalidInput("employer_id must be an 18-character unified social credit code")
    return employer_id


def _month_path(request: web.Request) -> Any:
    return field_month(dict(request.match_info), "month")


# Employers and employments --------------------------------------------------------------


@routes.post("/v1/admin/employers")
@operation(
    "Register an employer (code generated when not given)",
    "operator",
    body=EmployerRegistration,
    ok=Employer,
    status="201",
)
async def register_employer(request: web.Request) -> web.Response:
    body = await parse_body(request, EmployerRegistration)
    employer = await _insurance(request).register_employer(
        body.name,
        body.employer_id,
        actor=operator_actor(request),
    )
    return render(employer, Employer, status=201)


@routes.get("/v1/admin/employers/{employer_id}")
@operation(
    "An employer",
    "operator",
    params=[EMPLOYER_PATH],
    ok=Employer,
)
async def get_employer(request: web.Request) -> web.Response:
    return render(await _insurance(request).employer(_employer_id(request)), Employer)


@routes.post("/v1/admin/employments")
@operation(
    "Register an employment (late when more than 30 days after hiring); "
    "without employer_id, flexible employment",
    "operator",
    body=EmploymentRegistration,
    ok=Employment,
    status="201",
)
async def register_employment(request: web.Request) -> web.Response:
    """{ssn, hired_on[, employer_id]}: without employer_id, flexible employment."""
    body = await parse_body(request, EmploymentRegistration)
    employment = await _insurance(request).register_employment(
        body.ssn,
        body.employer_id,
        body.hired_on,
        actor=operator_actor(request),
    )
    return render(employment, Employment, status=201)


@routes.post("/v1/admin/employments/{employment_id}/end")
@operation(
    "End an employment",
    "operator",
    params=[param("employment_id", "path", INT)],
    body=EmploymentEnd,
    ok=Employment,
)
async def end_employment(request: web.Request) -> web.Response:
    body = await parse_body(request, EmploymentEnd)
    employment = await _insurance(request).end_employment(
        path_int(request, "employment_id"),
        body.ended_on,
        actor=operator_actor(request),
    )
    return render(employment, Employment)


@routes.get("/v1/admin/reports/late-registrations")
@operation(
    "Registrations made more than 30 days after hiring",
    "operator",
    params=[
        param("from", "query", DATE, "registration date (default: month start)"),
        param("to", "query", DATE, "registration date (default: month end)"),
        param("employer_id", "query", EMPLOYER_ID),
        FORMAT,
    ],
    ok=LateRegistrations,
    csv=True,
)
async def late_registrations(request: web.Request) -> web.StreamResponse:
    """Registrations made more than 30 days after hiring, by registration date:
    ?from=YYYY-MM-DD&to=YYYY-MM-DD (default: the current month)&employer_id=&format=."""
    employer_id = request.query.get("employer_id")
    if employer_id is not None and not USCC_RE.fullmatch(employer_id):
        raise InvalidInput("employer_id must be an 18-character unified social credit code")
    report = await _insurance(request).late_registrations(
        field_optional_date(request.query, "from"),
        field_optional_date(request.query, "to"),
        employer_id,
    )
    if wants_csv(request):
        return csv_response(report["registrations"], EMPLOYMENT_COLUMNS, "late-registrations.csv")
    return render(report, LateRegistrations)


# People: record, notices, suspension, eligibility ---------------------------------------


@routes.get("/v1/admin/people/{ssn}")
@operation(
    "A person: birth date and sex (from the ID number), account, cards, employments, suspensions",
    "operator",
    params=[SSN_PATH],
    ok=Person,
)
async def get_person(request: web.Request) -> web.Response:
    return render(await _insurance(request).person_record(_ssn(request)), Person)


@routes.get("/v1/admin/people/{ssn}/contributions")
@operation(
    "Payment notice of a person: paid, missing and suspended months",
    "operator",
    params=[SSN_PATH, FROM_MONTH, TO_MONTH, FORMAT],
    ok=PersonNotice,
    csv=True,
)
async def person_notice(request: web.Request) -> web.StreamResponse:
    """Payment notice of one person: ?from=YYYY-MM&to=YYYY-MM&format=json|csv."""
    insurance = _insurance(request)
    months = insurance.month_range(*month_span(request.query))
    notice = await insurance.person_notice(_ssn(request), months)
    if wants_csv(request):
        return csv_response(
            notice["months"], PERSON_NOTICE_COLUMNS, f"contributions-{notice['ssn']}.csv"
        )
    return render(notice, PersonNotice)


@routes.get("/v1/admin/employers/{employer_id}/payment-notice")
@operation(
    "Payment notice of an employer: per employee, paid and missing months",
    "operator",
    params=[EMPLOYER_PATH, FROM_MONTH, TO_MONTH, FORMAT],
    ok=EmployerNotice,
    csv=True,
)
async def employer_notice(request: web.Request) -> web.StreamResponse:
    """What the employer paid for which months, per employee, and what is missing."""
    insurance = _insurance(request)
    months = insurance.month_range(*month_span(request.query))
    notice = await insurance.employer_notice(_employer_id(request), months)
    if wants_csv(request):
        rows = [line for employee in notice["employees"] for line in employee["months"]]
        return csv_response(rows, NOTICE_COLUMNS, f"payment-notice-{notice['employer_id']}.csv")
    return render(notice, EmployerNotice)


@routes.post("/v1/admin/people/{ssn}/suspension")
@operation(
    "Declare a suspension of insurance from a month (at the counter)",
    "operator",
    params=[SSN_PATH],
    body=FromMonth,
    ok=SuspensionDeclared,
    status="201",
)
async def declare_suspension(request: web.Request) -> web.Response:
    body = await parse_body(request, FromMonth)
    result = await _insurance(request).declare_suspension(
        _ssn(request), as_month(body.from_month), actor=operator_actor(request)
    )
    return render(result, SuspensionDeclared, status=201)


@routes.post("/v1/admin/people/{ssn}/resumption")
@operation(
    "End the open suspension: contributions accepted again from a month",
    "operator",
    params=[SSN_PATH],
    body=FromMonth,
    ok=Resumed,
)
async def resume_insurance(request: web.Request) -> web.Response:
    body = await parse_body(request, FromMonth)
    result = await _insurance(request).resume(
        _ssn(request), as_month(body.from_month), actor=operator_actor(request)
    )
    return render(result, Resumed)


@routes.get("/v1/admin/people/{ssn}/eligibility")
@operation(
    "Covered for pooled-fund reimbursement on a date, with the reason",
    "operator",
    params=[SSN_PATH, param("date", "query", DATE, "default: today")],
    ok=Eligibility,
)
async def eligibility(request: web.Request) -> web.Response:
    """Covered for pooled-fund reimbursement on ?date=YYYY-MM-DD (default today), and why."""
    day = field_optional_date(request.query, "date")
    return render(await _insurance(request).eligibility(_ssn(request), day), Eligibility)


@routes.post("/v1/admin/people/{ssn}/password-reset")
@operation(
    "Issue a new random first self-service password, returned once (the ID "
    "card is checked against the card); unlocks the login",
    "operator",
    params=[SSN_PATH],
    body=CounterPasswordReset,
    ok=PasswordReset,
)
async def reset_password(request: web.Request) -> web.Response:
    """Counter reset of the self-service password after the ID card is checked against
    the card ({pan}); a new random first password, returned once, to be changed at the
    next login."""
    body = await parse_body(request, CounterPasswordReset)
    result = await _cardholder(request).reset_password_at_counter(
        _ssn(request), body.pan, actor=operator_actor(request)
    )
    return render(result, PasswordReset)


# Allocation -----------------------------------------------------------------------------


@routes.post("/v1/admin/allocations")
@operation(
    "Allocation run for a month: credit every individual account from the "
    "month's contributions (individual part + 30 % of the employer part); "
    "idempotent per person and month",
    "operator",
    body=AllocationRun,
    ok=AllocationRunDone,
)
async def run_allocation(request: web.Request) -> web.Response:
    """Allocate a month's contributions to individual accounts: {month: YYYY-MM}.
    Idempotent per person and month: running it again credits nobody twice."""
    body = await parse_body(request, AllocationRun)
    report = await _insurance(request).run_allocation(
        as_month(body.month), actor=operator_actor(request)
    )
    return render(report, AllocationRunDone)


@routes.get("/v1/admin/allocations/{month}")
@operation(
    "Allocation report of a month: summary and per-person lines",
    "operator",
    params=[param("month", "path", MONTH), LIMIT, CURSOR_PARAM, FORMAT],
    ok=AllocationReport,
    csv=True,
)
async def allocation_report(request: web.Request) -> web.StreamResponse:
    """Summary and per-person lines: ?limit=&cursor=&format=json|csv."""
    month = _month_path(request)
    report = await _insurance(request).allocation_report(
        month, request.query.get("cursor"), query_int(request, "limit", 100)
    )
    if wants_csv(request):
        return csv_response(report["lines"], ALLOCATION_COLUMNS, f"allocation-{month:%Y-%m}.csv")
    return render(report, AllocationReport)


# Audit ----------------------------------------------------------------------------------


@routes.get("/v1/admin/audit")
@operation(
    "The audit trail, newest first (never a PIN, password, key or token)",
    "operator",
    params=[
        param("subject_kind", "query", STR),
        param("subject_id", "query", STR),
        param("action", "query", STR),
        LIMIT,
        CURSOR_PARAM,
    ],
    ok=AuditPage,
)
async def audit_trail(request: web.Request) -> web.Response:
    """Newest first: ?subject_kind=&subject_id=&action=&limit=&cursor=."""
    query = request.query
    subject_kind = query.get("subject_kind")
    if subject_kind is not None and subject_kind not in AUDIT_SUBJECTS:
        raise InvalidInput(f"subject_kind must be one of {', '.join(sorted(AUDIT_SUBJECTS))}")
    for name in ("subject_id", "action"):
        if len(query.get(name, "")) > 64:
            raise InvalidInput(f"{name} is at most 64 characters")
    page = await audit_trail_page(
        request.config_dict[SERVICES].pool,
        subject_kind=subject_kind,
        subject_id=query.get("subject_id"),
        action=query.get("action"),
        cursor=query.get("cursor"),
        limit=query_int(request, "limit", 100),
    )
    return render({"entries": page.entries, "next_cursor": page.next_cursor}, AuditPage)
