"""Office pages at /office/ (DESIGN §11) for operator accounts with roles: counter
(find a person, PIN reset after the ID number is typed and compared, password reset with
a random one-time password, loss report, card replacement, freeze), officer (people,
cards, contributions, employers, allocation runs, merchants and terminals, reports, the
catalogue and policies of §10) and admin (operator accounts).

A sub-application: its middleware authenticates every request from the session cookie,
checks the role that each handler declares (a handler that declares none is refused),
checks the CSRF token of every post before the handler runs, and says errors in words.
Every change goes through the services with the session's operator as the actor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from aiohttp import web

from pos_gateway.domain.audit import OPERATOR, Actor
from pos_gateway.domain.display import business_today, parse_yuan
from pos_gateway.domain.months import parse_month
from pos_gateway.domain.operators import ADMIN, COUNTER, OFFICER, ROLES
from pos_gateway.errors import DomainError, InvalidInput, NotAuthenticated, NotPermitted
from pos_gateway.http.api import not_api
from pos_gateway.http.errors import status_of
from pos_gateway.http.insurance_state import INSURANCE
from pos_gateway.http.render import SETTLEMENT_COLUMNS, csv_response
from pos_gateway.http.state import SERVICES
from pos_gateway.http.validation import MAX_BODY_BYTES
from pos_gateway.services import reports, settlement
from pos_gateway.services.admin import AdminService, checked_ssn
from pos_gateway.services.cardholder import CardholderService
from pos_gateway.services.insurance import InsuranceService
from pos_gateway.services.operators import OperatorService, OperatorSession
from pos_gateway.services.settlement import RowsRefused
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
COOKIE = "pos_office"
COOKIE_PATH = "/office/"
SESSION = web.RequestKey("office_session", OperatorSession)
FORM = web.RequestKey("office_form", dict)
PUBLIC, ANY_ROLE = "public", "any"
PEOPLE_ROLES = (COUNTER, OFFICER)
OPERATORS_URL = COOKIE_PATH + "operators"
# A catalogue or policy CSV posted from the office page: within the app's body limit
# (MAX_BODY_BYTES, 16 KiB); larger loads go through the JSON API (4 MiB) or the CLI.
MAX_CSV_CHARS = MAX_BODY_BYTES


def office(access: str | tuple[str, ...]) -> Callable[[Handler], Handler]:
    """Declare who may use a page: PUBLIC, ANY_ROLE (logged in), or the roles of which
    the operator needs one. The middleware enforces it."""

    def wrap(handler: Handler) -> Handler:
        handler.office_access = access  # type: ignore[attr-defined]
        return not_api("an HTML page of the office (DESIGN §11)")(handler)

    return wrap


def _access(request: web.Request, handler: Handler) -> Any:
    route_handler = request.match_info.handler
    return getattr(route_handler, "office_access", getattr(handler, "office_access", None))


@web.middleware
async def office_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # 404 / 405 as usual

    async def answer() -> web.StreamResponse:
        access = _access(request, handler)
        if access is None:
            raise NotPermitted("no access declared for this page", code="role_required")
        await load_session(request, COOKIE, _operators(request).authenticate, SESSION)
        session = request.get(SESSION)
        if access != PUBLIC:
            if session is None:
                if request.method == "POST":
                    raise NotAuthenticated("log in again", code="no_session")
                return redirect(COOKIE_PATH)
            if access != ANY_ROLE:
                if not set(session.roles) & set(access):
                    raise NotPermitted("role required", code="role_required")
                if session.must_change_password:
                    return redirect(COOKIE_PATH + "password")
        if request.method == "POST":
            request[FORM] = dict(await read_form(request))
        return await handler(request)

    return await answer_page(request, COOKIE_PATH, answer)


def office_app() -> web.Application:
    app = web.Application(middlewares=[office_guard])
    app.add_routes(routes)
    return app


# Helpers --------------------------------------------------------------------------------


def _operators(request: web.Request) -> OperatorService:
    return services(request).operators


def _admin(request: web.Request) -> AdminService:
    return request.config_dict[SERVICES].admin


def _cardholder(request: web.Request) -> CardholderService:
    return request.config_dict[INSURANCE].cardholder


def _insurance(request: web.Request) -> InsuranceService:
    return request.config_dict[INSURANCE].insurance


def _session(request: web.Request) -> OperatorSession:
    return request[SESSION]


def _form(request: web.Request) -> dict:
    return request[FORM]


def _actor(request: web.Request) -> Actor:
    """Always the session's operator: no header can name another."""
    return Actor(OPERATOR, _session(request).username, request.remote, request_id())


def _page(request: web.Request, template: str, **context: Any) -> web.Response:
    session = request.get(SESSION)
    return render(
        request,
        template,
        {"operator": session, "roles": set(session.roles) if session else set(), **context},
    )


def _person_url(ssn: str) -> str:
    return f"{COOKIE_PATH}people/{ssn}"


def _ssn_path(request: web.Request) -> str:
    return checked_ssn(request.match_info["ssn"])


def _typed_ssn_matches(request: web.Request, ssn: str) -> None:
    """The clerk types the number from the holder's ID card; the server compares it."""
    typed = field(_form(request), "typed_ssn", 18).upper()
    if typed != ssn:
        raise InvalidInput("the typed ID number does not match", code="id_mismatch")


def _card_id(request: web.Request) -> int:
    raw = field(_form(request), "card_id", 18)
    if not raw.isascii() or not raw.isdigit():
        raise InvalidInput("choose a card", code="not_found")
    return int(raw)


async def _card_of(request: web.Request, ssn: str) -> str:
    """The number of the chosen card, which must be this person's."""
    card = await services(request).queries.card(_card_id(request))
    if card["ssn"] != ssn:
        raise InvalidInput("not this person's card", code="not_found")
    return card["pan"]


def _month(request: web.Request, name: str = "month") -> date:
    try:
        return parse_month(field(_form(request), name, 7))
    except ValueError:
        raise InvalidInput("month is YYYY-MM", code="invalid_month") from None


def _yuan(request: web.Request, name: str) -> int:
    fen = parse_yuan(field(_form(request), name, 20))
    if fen is None:
        raise InvalidInput("amount in yuan", code="invalid_amount")
    return fen


def _once(request: web.Request, title: str, secrets_shown: list[tuple[str, str]], back: str):
    """A one-time password, PIN or card number, shown on this answer only."""
    return _page(request, "office/once.html", title=title, shown=secrets_shown, back=back)


# Login, logout, own password ----------------------------------------------------------------


@routes.get("/")
@office(PUBLIC)
async def home(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    if session is None:
        return _page(request, "office/login.html", error=None)
    if session.must_change_password:
        return redirect(COOKIE_PATH + "password")
    return _page(request, "office/home.html")


@routes.post("/login")
@office(PUBLIC)
async def login(request: web.Request) -> web.StreamResponse:
    form = _form(request)
    username = field(form, "username", 32).lower()
    actor = Actor(OPERATOR, username or "-", request.remote, request_id())
    try:
        result = await _operators(request).login(username, field(form, "password", 64), actor=actor)
    except DomainError as exc:
        if exc.code not in ("login_failed", "login_locked"):
            raise
        exc.code = "operator_" + exc.code
        return render(
            request, "office/login.html", {"error": error_text(request, exc)}, status_of(exc)
        )
    response = redirect(COOKIE_PATH + ("password" if result.must_change_password else ""))
    set_session_cookie(request, response, COOKIE, result.token, COOKIE_PATH)
    return response


@routes.post("/logout")
@office(ANY_ROLE)
async def logout(request: web.Request) -> web.StreamResponse:
    await _operators(request).logout(_session(request), actor=_actor(request))
    response = redirect(COOKIE_PATH)
    clear_session_cookie(response, COOKIE, COOKIE_PATH)
    return response


@routes.get("/password")
@office(ANY_ROLE)
async def password_form(request: web.Request) -> web.StreamResponse:
    return _page(request, "office/password.html")


@routes.post("/password")
@office(ANY_ROLE)
async def change_password(request: web.Request) -> web.StreamResponse:
    form = _form(request)
    new = new_password(form)
    try:
        await _operators(request).change_password(
            _session(request), field(form, "old_password", 64), new, actor=_actor(request)
        )
    except DomainError as exc:
        if exc.code == "weak_password":
            exc.code = "weak_operator_password"
        raise
    return redirect(COOKIE_PATH)


# People (counter and officer) --------------------------------------------------------------


@routes.get("/people")
@office(PEOPLE_ROLES)
async def people_search(request: web.Request) -> web.StreamResponse:
    query = request.query.get("q", "")
    found = await services(request).queries.search_people(query)
    return _page(request, "office/people.html", query=query, found=found, searched=bool(query))


@routes.get("/people/{ssn}")
@office(PEOPLE_ROLES)
async def person(request: web.Request) -> web.StreamResponse:
    ssn = _ssn_path(request)
    insurance = _insurance(request)
    profile = await _cardholder(request).profile(ssn)
    record = await insurance.person_record(ssn)
    eligibility = await insurance.eligibility(ssn)
    notice = await insurance.person_notice(ssn, insurance.month_range(None, None))
    return _page(
        request,
        "office/person.html",
        profile=profile,
        eligibility=eligibility,
        suspensions=record["suspensions"],
        notice=notice,
    )


@routes.post("/people/{ssn}/pin-reset")
@office((COUNTER,))
async def pin_reset(request: web.Request) -> web.StreamResponse:
    ssn = _ssn_path(request)
    _typed_ssn_matches(request, ssn)
    form = _form(request)
    pin = new_pin(form)
    pan = await _card_of(request, ssn)
    await _admin(request).reset_pin(pan, ssn, pin, actor=_actor(request))
    return _page(request, "office/done.html", what="pin_reset", ssn=ssn)


@routes.post("/people/{ssn}/password-reset")
@office((COUNTER,))
async def password_reset(request: web.Request) -> web.StreamResponse:
    ssn = _ssn_path(request)
    _typed_ssn_matches(request, ssn)
    pan = await _card_of(request, ssn)
    result = await _cardholder(request).reset_password_at_counter(ssn, pan, actor=_actor(request))
    return _once(request, "password_reset", [("password", result["password"])], _person_url(ssn))


@routes.post("/people/{ssn}/report-lost")
@office((COUNTER,))
async def report_lost(request: web.Request) -> web.StreamResponse:
    ssn = _ssn_path(request)
    pan = await _card_of(request, ssn)
    await _admin(request).report_lost(pan, actor=_actor(request))
    return redirect(_person_url(ssn))


@routes.post("/people/{ssn}/replace-card")
@office((COUNTER,))
async def replace_card(request: web.Request) -> web.StreamResponse:
    ssn = _ssn_path(request)
    _typed_ssn_matches(request, ssn)
    pan = await _card_of(request, ssn)
    card = await _admin(request).replace_card(pan, ssn, actor=_actor(request))
    return _once(
        request, "card_replaced", [("pan", card.pan), ("pin", card.pin or "")], _person_url(ssn)
    )


@routes.post("/people/{ssn}/{action:freeze|unfreeze}")
@office((COUNTER,))
async def set_frozen(request: web.Request) -> web.StreamResponse:
    ssn = _ssn_path(request)
    record = await _insurance(request).person_record(ssn)
    frozen = request.match_info["action"] == "freeze"
    await _admin(request).set_account_frozen(record["account_id"], frozen, actor=_actor(request))
    return redirect(_person_url(ssn))


@routes.post("/people")
@office((OFFICER,))
async def register_person(request: web.Request) -> web.StreamResponse:
    form = _form(request)
    ssn = checked_ssn(field(form, "ssn", 18).upper())
    name = field(form, "name", 100)
    if not name:
        raise InvalidInput("name required", code="malformed_request")
    await _admin(request).register_person(ssn, name, actor=_actor(request))
    return redirect(_person_url(ssn))


@routes.post("/people/{ssn}/cards")
@office((OFFICER,))
async def issue_card(request: web.Request) -> web.StreamResponse:
    ssn = _ssn_path(request)
    card = await _admin(request).issue_card(ssn, actor=_actor(request))
    shown = [("pan", card.pan), ("pin", card.pin or "")]
    if card.password is not None:
        shown.append(("password", card.password))
    return _once(request, "card_issued", shown, _person_url(ssn))


@routes.post("/people/{ssn}/contributions")
@office((OFFICER,))
async def record_contribution(request: web.Request) -> web.StreamResponse:
    ssn = _ssn_path(request)
    await _admin(request).record_contribution(
        ssn,
        _month(request),
        _yuan(request, "employer_part"),
        _yuan(request, "individual_part"),
        actor=_actor(request),
    )
    return redirect(_person_url(ssn))


# Officer: employers, allocations, merchants, terminals, reports -------------------------------


@routes.get("/employers")
@office((OFFICER,))
async def employers(request: web.Request) -> web.StreamResponse:
    return _page(
        request, "office/employers.html", employers=await services(request).queries.employers()
    )


@routes.post("/employers")
@office((OFFICER,))
async def register_employer(request: web.Request) -> web.StreamResponse:
    name = field(_form(request), "name", 200)
    if not name:
        raise InvalidInput("name required", code="malformed_request")
    await _insurance(request).register_employer(name, actor=_actor(request))
    return redirect(COOKIE_PATH + "employers")


@routes.get("/allocations")
@office((OFFICER,))
async def allocations(request: web.Request) -> web.StreamResponse:
    insurance = _insurance(request)
    raw = request.query.get("month", "")
    try:
        month = parse_month(raw) if raw else insurance.current_month()
    except ValueError:
        raise InvalidInput("month is YYYY-MM", code="invalid_month") from None
    summary = await insurance.allocation_summary(month)
    return _page(request, "office/allocations.html", summary=summary, month=f"{month:%Y-%m}")


@routes.post("/allocations")
@office((OFFICER,))
async def run_allocation(request: web.Request) -> web.StreamResponse:
    month = _month(request)
    await _insurance(request).run_allocation(month, actor=_actor(request))
    return redirect(f"{COOKIE_PATH}allocations?month={month:%Y-%m}")


@routes.get("/merchants")
@office((OFFICER,))
async def merchants(request: web.Request) -> web.StreamResponse:
    query = request.query.get("q", "")
    if len(query) > 100:
        raise InvalidInput("the search is too long", code="malformed_request")
    found = await services(request).queries.merchants(query)
    return _page(request, "office/merchants.html", query=query, merchants=found)


@routes.post("/merchants")
@office((OFFICER,))
async def register_merchant(request: web.Request) -> web.StreamResponse:
    form = _form(request)
    try:
        start = date.fromisoformat(field(form, "designated_from", 10))
        end = date.fromisoformat(field(form, "designated_until", 10))
    except ValueError:
        raise InvalidInput("dates are YYYY-MM-DD", code="invalid_period") from None
    await _admin(request).register_merchant(
        field(form, "name", 200), field(form, "kind", 20), start, end, actor=_actor(request)
    )
    return redirect(COOKIE_PATH + "merchants")


@routes.post("/merchants/{merchant_id}/{action:suspend|reinstate}")
@office((OFFICER,))
async def set_merchant_suspended(request: web.Request) -> web.StreamResponse:
    await _admin(request).set_merchant_suspended(
        request.match_info["merchant_id"][:15],
        request.match_info["action"] == "suspend",
        actor=_actor(request),
    )
    return redirect(COOKIE_PATH + "merchants")


@routes.get("/terminals")
@office((OFFICER,))
async def terminals(request: web.Request) -> web.StreamResponse:
    merchant_id = request.query.get("merchant", "")[:15]
    found = await services(request).queries.terminals(merchant_id)
    return _page(request, "office/terminals.html", terminals=found, merchant=merchant_id)


@routes.post("/terminals/{terminal_id}/{action:disable|enable}")
@office((OFFICER,))
async def set_terminal_disabled(request: web.Request) -> web.StreamResponse:
    await _admin(request).set_terminal_disabled(
        request.match_info["terminal_id"][:8],
        request.match_info["action"] == "disable",
        actor=_actor(request),
    )
    return redirect(COOKIE_PATH + "terminals")


def _report_day(request: web.Request) -> date:
    raw = request.query.get("date", "")
    if not raw:
        return business_today()
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("dates are YYYY-MM-DD", code="invalid_period") from None


@routes.get("/reports")
@office((OFFICER,))
async def reports_page(request: web.Request) -> web.StreamResponse:
    day = _report_day(request)
    rows = await reports.settlement(request.config_dict[SERVICES].pool, day, None)
    return _page(request, "office/reports.html", day=day.isoformat(), rows=rows)


@routes.get("/reports/settlement.csv")
@office((OFFICER,))
async def settlement_csv(request: web.Request) -> web.StreamResponse:
    day = _report_day(request)
    rows = await reports.settlement(request.config_dict[SERVICES].pool, day, None)
    return csv_response(rows, SETTLEMENT_COLUMNS, f"settlement-{day.isoformat()}.csv")


# Officer: the catalogue and the policies of DESIGN §10 ------------------------------------------

CATALOGUE_URL = COOKIE_PATH + "catalogue"


def _uploaded_csv(request: web.Request) -> str:
    """The CSV of the form: the uploaded file if one was chosen, else the text area."""
    upload = _form(request).get("file")
    if isinstance(upload, web.FileField) and upload.filename:
        try:
            return upload.file.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("CSV must be UTF-8", code="invalid_csv") from None
    return field(_form(request), "csv", MAX_CSV_CHARS)


async def _catalogue_page(
    request: web.Request, *, loaded: int | None = None, refused: RowsRefused | None = None
) -> web.Response:
    pool = request.config_dict[SERVICES].pool
    page = _page(
        request,
        "office/catalogue.html",
        items=await settlement.catalogue(pool),
        policies=await settlement.policies(pool),
        loaded=loaded,
        refused_lines=", ".join(map(str, refused.lines)) if refused else None,
        refused_detail=refused.problems[:20] if refused else None,
    )
    if refused is not None:
        page.set_status(status_of(refused))
    return page


@routes.get("/catalogue")
@office((OFFICER,))
async def catalogue_page(request: web.Request) -> web.StreamResponse:
    return await _catalogue_page(request)


@routes.post("/{table:catalogue|policies}")
@office((OFFICER,))
async def load_settlement_table(request: web.Request) -> web.StreamResponse:
    load = settlement.load_catalogue
    if request.match_info["table"] == "policies":
        load = settlement.load_policies
    pool = request.config_dict[SERVICES].pool
    try:
        loaded = await load(pool, _uploaded_csv(request), actor=_actor(request))
    except RowsRefused as exc:
        return await _catalogue_page(request, refused=exc)
    return await _catalogue_page(request, loaded=loaded)


# Admin: operator accounts ----------------------------------------------------------------------


def _roles(request: web.Request) -> list[str]:
    form = _form(request)
    return [role for role in ROLES if form.get(f"role_{role}") == "on"]


@routes.get("/operators")
@office((ADMIN,))
async def operators(request: web.Request) -> web.StreamResponse:
    accounts = await _operators(request).accounts()
    return _page(request, "office/operators.html", accounts=accounts, all_roles=ROLES)


@routes.post("/operators")
@office((ADMIN,))
async def add_operator(request: web.Request) -> web.StreamResponse:
    username = field(_form(request), "username", 32).lower()
    password = await _operators(request).add(username, _roles(request), actor=_actor(request))
    return _once(
        request, "operator_added", [("username", username), ("password", password)], OPERATORS_URL
    )


@routes.post("/operators/{username}/roles")
@office((ADMIN,))
async def set_roles(request: web.Request) -> web.StreamResponse:
    await _operators(request).set_roles(
        request.match_info["username"][:32], _roles(request), actor=_actor(request)
    )
    return redirect(COOKIE_PATH + "operators")


@routes.post("/operators/{username}/{action:disable|enable}")
@office((ADMIN,))
async def set_operator_disabled(request: web.Request) -> web.StreamResponse:
    await _operators(request).set_disabled(
        request.match_info["username"][:32],
        request.match_info["action"] == "disable",
        actor=_actor(request),
    )
    return redirect(OPERATORS_URL)


@routes.post("/operators/{username}/password-reset")
@office((ADMIN,))
async def reset_operator_password(request: web.Request) -> web.StreamResponse:
    username = request.match_info["username"][:32]
    password = await _operators(request).reset_password(username, actor=_actor(request))
    return _once(
        request,
        "operator_password_reset",
        [("username", username), ("password", password)],
        OPERATORS_URL,
    )
