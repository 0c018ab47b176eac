"""Cardholder pages at / (DESIGN §11): log in with the ID number and password, the
forced change of a first password, balance, statement (paged, printable, CSV), coverage
and contributions, PIN change, loss report, suspension declaration.

They are routes of the root application, not a sub-application (aiohttp gives no
sub-application the prefix "/"); `cardholder_page` wraps every handler instead, and a
test checks that every route here is wrapped."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date
from pathlib import Path

from aiohttp import web

from pos_gateway.domain.audit import CARDHOLDER, Actor
from pos_gateway.domain.display import format_time, format_yuan, month_period
from pos_gateway.domain.months import parse_month
from pos_gateway.errors import DomainError, InvalidInput, NotAuthenticated
from pos_gateway.http.api import not_api
from pos_gateway.http.errors import status_of
from pos_gateway.http.insurance_state import INSURANCE
from pos_gateway.services.cardholder import CardholderService, Session
from pos_gateway.services.insurance import InsuranceService
from pos_gateway.services.pages import PeriodStatement
from pos_gateway.services.reports import MAX_PAGE
from pos_gateway.web.core import (
    Handler,
    answer_page,
    clear_session_cookie,
    error_text,
    field,
    load_session,
    new_password,
    new_pin,
    read_form,
    redirect,
    render,
    request_id,
    services,
    set_session_cookie,
)

routes = web.RouteTableDef()
COOKIE = "pos_me"
SESSION = web.RequestKey("cardholder_page_session", Session)
FORM = web.RequestKey("cardholder_page_form", dict)
STATEMENT_PAGE = 50
CSV_MAX_LINES = 10_000
STATIC_DIR = Path(__file__).parent / "static"


def _cardholder(request: web.Request) -> CardholderService:
    return request.config_dict[INSURANCE].cardholder


def _insurance(request: web.Request) -> InsuranceService:
    return request.config_dict[INSURANCE].insurance


def _actor(request: web.Request, ssn: str) -> Actor:
    return Actor(CARDHOLDER, ssn, request.remote, request_id())


def cardholder_page(
    *, public: bool = False, before_password_change: bool = False, back: str = "/"
) -> Callable[[Handler], Handler]:
    """Session from the cookie (or, for a public page, none needed), the CSRF check of
    every post before the handler runs, errors as a page in words, and the headers."""

    def wrap(handler: Handler) -> Handler:
        async def answer(request: web.Request) -> web.StreamResponse:
            await load_session(request, COOKIE, _cardholder(request).authenticate, SESSION)
            if SESSION not in request and not public:
                if request.method == "POST":
                    raise NotAuthenticated("log in again", code="no_session")
                return redirect("/")
            if (
                SESSION in request
                and request[SESSION].password_change_required
                and not before_password_change
                and not public
            ):
                return redirect("/password")
            if request.method == "POST":
                request[FORM] = dict(await read_form(request))
            return await handler(request)

        async def checked(request: web.Request) -> web.StreamResponse:
            return await answer_page(request, back, lambda: answer(request))

        checked.page_access = "public" if public else "cardholder"  # type: ignore[attr-defined]
        return not_api("an HTML page of the cardholder (DESIGN §11)")(checked)

    return wrap


def _session(request: web.Request) -> Session:
    return request[SESSION]


def _form(request: web.Request) -> dict:
    return request[FORM]


# Login, logout, password -----------------------------------------------------------------


@routes.get("/")
@cardholder_page(public=True)
async def home(request: web.Request) -> web.StreamResponse:
    """The login form, or the balance once logged in."""
    if SESSION not in request:
        return render(request, "me/login.html", {"error": None})
    session = _session(request)
    if session.password_change_required:
        return redirect("/password")
    profile = await _cardholder(request).profile(session.ssn)
    return render(request, "me/home.html", {"profile": profile, "nav": "home"})


@routes.post("/login")
@cardholder_page(public=True)
async def login(request: web.Request) -> web.StreamResponse:
    form = _form(request)
    ssn = field(form, "ssn", 18).upper()
    try:
        result = await _cardholder(request).login(
            ssn, field(form, "password", 64), actor=_actor(request, ssn[:18] or "-")
        )
    except DomainError as exc:
        if exc.code not in ("login_failed", "login_locked", "invalid_ssn"):
            raise
        return render(request, "me/login.html", {"error": error_text(request, exc)}, status_of(exc))
    response = redirect("/password" if result.must_change_password else "/")
    set_session_cookie(request, response, COOKIE, result.token, "/")
    return response


@routes.post("/logout")
@cardholder_page(before_password_change=True)
async def logout(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    await _cardholder(request).logout(session, actor=_actor(request, session.ssn))
    response = redirect("/")
    clear_session_cookie(response, COOKIE, "/")
    return response


@routes.get("/password")
@cardholder_page(before_password_change=True)
async def password_form(request: web.Request) -> web.StreamResponse:
    forced = _session(request).password_change_required
    return render(request, "me/password.html", {"forced": forced, "nav": "password"})


@routes.post("/password")
@cardholder_page(before_password_change=True, back="/password")
async def change_password(request: web.Request) -> web.StreamResponse:
    form = _form(request)
    new = new_password(form)
    session = _session(request)
    await _cardholder(request).change_password(
        session, field(form, "old_password", 64), new, actor=_actor(request, session.ssn)
    )
    return render(request, "me/done.html", {"what": "password"})


# Statement ------------------------------------------------------------------------------


def _day(value: str, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("dates are YYYY-MM-DD", code="invalid_period") from None


def _period(request: web.Request) -> tuple[date, date]:
    """The current month (in the scheme's time zone) unless from/to say otherwise."""
    first, last = month_period(_insurance(request).current_month())
    return (
        _day(request.query.get("from", ""), first),
        _day(request.query.get("to", ""), last),
    )


def _after(request: web.Request) -> int | None:
    raw = request.query.get("after", "")
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise InvalidInput("after must be an entry number", code="invalid_period")
    return int(raw)


async def _statement(request: web.Request, limit: int, after: int | None) -> PeriodStatement:
    first, last = _period(request)
    return await services(request).queries.statement(
        _session(request).ssn, first, last, after, limit
    )


@routes.get("/statement")
@cardholder_page(back="/statement")
async def statement(request: web.Request) -> web.StreamResponse:
    page = await _statement(request, STATEMENT_PAGE, _after(request))
    profile = await _cardholder(request).profile(_session(request).ssn)
    return render(
        request,
        "me/statement.html",
        {"statement": page, "profile": profile, "nav": "statement"},
    )


@routes.get("/statement.csv")
@cardholder_page()
async def statement_csv(request: web.Request) -> web.StreamResponse:
    """The whole period (up to 10,000 lines): yuan with two decimals, Shanghai times."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["time", "kind", "amount_cny", "balance_after_cny", "merchant", "terminal_id", "rrn",
         "reference"]
    )  # fmt: skip
    after, written = None, 0
    while written < CSV_MAX_LINES:
        page = await _statement(request, MAX_PAGE, after)
        for e in page.entries:
            writer.writerow(
                [
                    format_time(e["created_at"]),
                    e["kind"],
                    format_yuan(e["amount"]),
                    format_yuan(e["balance_after"]),
                    _cell(e["merchant_name"]),
                    e["terminal_id"] or "",
                    e["rrn"] or "",
                    _cell(e["reference"]),
                ]
            )
        written += len(page.entries)
        if page.next_after is None:
            break
        after = page.next_after
    first, last = _period(request)
    return web.Response(
        text=buffer.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="statement-{first}-{last}.csv"'},
    )


def _cell(value: str | None) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet.
    if value and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value or ""


# Coverage, contributions, suspension ------------------------------------------------------


@routes.get("/coverage")
@cardholder_page()
async def coverage(request: web.Request) -> web.StreamResponse:
    insurance = _insurance(request)
    ssn = _session(request).ssn
    eligibility = await insurance.eligibility(ssn)
    notice = await insurance.person_notice(ssn, insurance.month_range(None, None))
    suspensions = (await insurance.person_record(ssn))["suspensions"]
    return render(
        request,
        "me/coverage.html",
        {
            "eligibility": eligibility,
            "notice": notice,
            "suspensions": suspensions,
            "open_suspension": any(s["resumed_from"] is None for s in suspensions),
            "nav": "coverage",
        },
    )


@routes.post("/suspension")
@cardholder_page(back="/coverage")
async def declare_suspension(request: web.Request) -> web.StreamResponse:
    raw = field(_form(request), "from_month", 7)
    try:
        month = parse_month(raw)
    except ValueError:
        raise InvalidInput("month is YYYY-MM", code="invalid_month") from None
    ssn = _session(request).ssn
    await _insurance(request).declare_suspension(ssn, month, actor=_actor(request, ssn))
    return redirect("/coverage")


# PIN and loss ------------------------------------------------------------------------------


def _card_id(form: dict) -> int:
    raw = field(form, "card_id", 18)
    if not raw.isascii() or not raw.isdigit():
        raise InvalidInput("choose a card", code="not_found")
    return int(raw)


@routes.get("/pin")
@cardholder_page()
async def pin_form(request: web.Request) -> web.StreamResponse:
    profile = await _cardholder(request).profile(_session(request).ssn)
    return render(request, "me/pin.html", {"profile": profile, "nav": "pin"})


@routes.post("/pin")
@cardholder_page(back="/pin")
async def change_pin(request: web.Request) -> web.StreamResponse:
    form = _form(request)
    pin = new_pin(form)
    ssn = _session(request).ssn
    await _cardholder(request).change_pin(
        ssn, _card_id(form), field(form, "old_pin", 12), pin, actor=_actor(request, ssn)
    )
    return render(request, "me/done.html", {"what": "pin"})


@routes.get("/report-lost")
@cardholder_page()
async def report_lost_form(request: web.Request) -> web.StreamResponse:
    profile = await _cardholder(request).profile(_session(request).ssn)
    return render(request, "me/report_lost.html", {"profile": profile, "nav": "lost"})


@routes.post("/report-lost")
@cardholder_page(back="/report-lost")
async def report_lost(request: web.Request) -> web.StreamResponse:
    ssn = _session(request).ssn
    await _cardholder(request).report_lost(
        ssn, _card_id(_form(request)), actor=_actor(request, ssn)
    )
    return render(request, "me/done.html", {"what": "lost"})


# The stylesheet ---------------------------------------------------------------------------


@routes.get("/assets/pages.css")
@not_api("the pages' stylesheet")
async def stylesheet(request: web.Request) -> web.StreamResponse:
    """Public and the same for everyone: cacheable, unlike the pages."""
    return web.Response(
        body=(STATIC_DIR / "pages.css").read_bytes(),
        content_type="text/css",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


stylesheet.page_access = "asset"  # type: ignore[union-attr]
