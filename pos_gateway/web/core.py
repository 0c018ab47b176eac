"""What every page shares: rendering in the visitor's language, security headers, the
session cookie, CSRF tokens, form fields and errors said in words."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp_jinja2
import structlog
from aiohttp import web
from multidict import MultiDictProxy

from pos_gateway.domain.display import format_cny, format_time
from pos_gateway.errors import DomainError, InvalidInput, NotAuthenticated, NotPermitted
from pos_gateway.http.errors import status_of
from pos_gateway.services.operators import OperatorService
from pos_gateway.services.pages import PageQueries
from pos_gateway.store.database import database_unavailable
from pos_gateway.web.i18n import EN, N_, negotiate, translations

log = structlog.get_logger("pos_gateway.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")
CSRF_FIELD = "csrf"
PRE_SESSION_COOKIE = "pos_csrf"
# Content-Security-Policy: no script at all, styles only from our own file, no framing.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class PageServices:
    operators: OperatorService
    queries: PageQueries
    csrf_key: bytes
    trust_forwarded_proto: bool


PAGES = web.AppKey("pages", PageServices)
SESSION_TOKEN = web.RequestKey("page_session_token", str)
NEW_PRE_SESSION = web.RequestKey("page_new_pre_session", str)


def services(request: web.Request) -> PageServices:
    return request.config_dict[PAGES]


def language(request: web.Request) -> str:
    return negotiate(request.headers.get("Accept-Language", ""))


def gettext_for(request: web.Request) -> Callable[..., str]:
    catalogue = translations(language(request))

    def gettext(message: str, **values: Any) -> str:
        text = catalogue.gettext(message)
        return text % values if values else text

    return gettext


def is_secure(request: web.Request) -> bool:
    """TLS here, or (only when trusted by setting) at the proxy in front."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return services(request).trust_forwarded_proto and forwarded.lower() == "https"


# CSRF ---------------------------------------------------------------------------------


def _mac(request: web.Request, purpose: str, value: str) -> str:
    key = services(request).csrf_key
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def csrf_token(request: web.Request) -> str:
    """Bound to the session (or, before login, to a random pre-session cookie), so a page
    of another site cannot know it."""
    token = request.get(SESSION_TOKEN)
    if token:
        return _mac(request, "session", token)
    pre = request.cookies.get(PRE_SESSION_COOKIE) or request.get(NEW_PRE_SESSION)
    if not pre:
        pre = secrets.token_urlsafe(32)
        request[NEW_PRE_SESSION] = pre
    return _mac(request, "pre", pre)


def check_csrf(request: web.Request, form: Mapping[str, str]) -> None:
    """Before anything changes: a post without the right token is refused (403)."""
    token = request.get(SESSION_TOKEN)
    if token:
        expected = _mac(request, "session", token)
    else:
        pre = request.cookies.get(PRE_SESSION_COOKIE)
        if not pre:
            raise NotPermitted("form expired", code="csrf")
        expected = _mac(request, "pre", pre)
    offered = form.get(CSRF_FIELD, "")
    if not isinstance(offered, str) or not hmac.compare_digest(offered, expected):
        raise NotPermitted("form expired", code="csrf")


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """The posted form, CSRF-checked; only text fields."""
    try:
        form = await request.post()
    except ValueError:
        raise InvalidInput("unreadable form", code="malformed_request") from None
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    check_csrf(request, fields)
    return form  # type: ignore[return-value]


def field(form: Mapping[str, Any], name: str, max_len: int = 200) -> str:
    value = form.get(name, "")
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidInput(f"{name} is too long", code="malformed_request")
    return value.strip()


def new_password(form: Mapping[str, Any]) -> str:
    """The new password, typed twice alike."""
    return _typed_twice(form, "new_password", 64, "the new passwords differ", "password_mismatch")


def new_pin(form: Mapping[str, Any]) -> str:
    """The new PIN, typed twice alike."""
    return _typed_twice(form, "new_pin", 12, "the new PINs differ", "pin_mismatch")


def _typed_twice(form: Mapping[str, Any], name: str, max_len: int, message: str, code: str) -> str:
    value = field(form, name, max_len)
    if value != field(form, f"{name}_again", max_len):
        raise InvalidInput(message, code=code)
    return value


# Cookies and headers --------------------------------------------------------------------


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, name: str, token: str, path: str
) -> None:
    # No Max-Age: the browser forgets it on close; the server ends it anyway (idle 30
    # minutes, at most 8 hours).
    response.set_cookie(
        name,
        token,
        path=path,
        httponly=True,
        samesite="Strict",
        secure=is_secure(request),
    )


def clear_session_cookie(response: web.StreamResponse, name: str, path: str) -> None:
    response.del_cookie(name, path=path)


def finish(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Headers of every page answer: no framing, no script. (Nothing cached: pages show
    personal data, and http/caching.py makes every answer but a few public ones
    no-store.)"""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Language"] = "en" if language(request) == EN else "zh-CN"
    new_pre = request.get(NEW_PRE_SESSION)
    if new_pre and not response.prepared:
        response.set_cookie(
            PRE_SESSION_COOKIE,
            new_pre,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=is_secure(request),
        )
    return response


def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> web.Response:
    gettext = gettext_for(request)
    page = {
        "_": gettext,
        "lang": "en" if language(request) == EN else "zh-CN",
        "cny": format_cny,
        "time": format_time,
        "csrf": csrf_token(request),
        **(context or {}),
    }
    return aiohttp_jinja2.render_template(template, request, page, status=status)


def redirect(location: str) -> web.Response:
    """After a successful post: 303 See Other, so a reload does not post again."""
    return web.Response(status=303, headers={"Location": location})


# Errors in words ------------------------------------------------------------------------

ERROR_MESSAGES = {
    "login_failed": N_("The ID number or the password is wrong."),
    "login_locked": N_(
        "Logging in is locked after too many wrong passwords. Try again later, or have "
        "the password reset at a counter."
    ),
    "operator_login_failed": N_("The user name or the password is wrong."),
    "operator_login_locked": N_(
        "Logging in is locked after too many wrong passwords. Ask an administrator."
    ),
    "weak_password": N_(
        "This password cannot be used: 8 to 64 characters with letters and digits, not "
        "containing your ID number or birth date, and different from the old one."
    ),
    "weak_operator_password": N_(
        "This password cannot be used: 10 to 64 characters with letters and digits, "
        "different from the old one."
    ),
    "wrong_password": N_("The old password is wrong."),
    "invalid_pin": N_("A PIN is 4 to 12 digits."),
    "weak_pin": N_(
        "This PIN is too easy to guess (repeated digits, a run, a birth date or the "
        "last digits of the ID or card number). Choose another."
    ),
    "pin_mismatch": N_("The two new PINs are not the same."),
    "password_mismatch": N_("The two new passwords are not the same."),
    "wrong_pin": N_("The old PIN is wrong."),
    "pin_locked": N_("Too many wrong PINs: the PIN must be reset at a counter."),
    "card_not_active": N_("The card is not active."),
    "card_replaced": N_("The card was replaced and is no longer in use."),
    "not_found": N_("Not found."),
    "id_mismatch": N_(
        "The ID number typed does not match this person. Check the ID card and type it again."
    ),
    "no_session": N_("Your session has ended. Please log in again."),
    "csrf": N_("The form has expired. Please go back, reload the page and try again."),
    "invalid_ssn": N_("That is not a valid 18-character ID number."),
    "insurance_suspended": N_("Insurance is suspended for that month."),
    "already_suspended": N_("A suspension is already declared."),
    "invalid_month": N_("Give the month as YYYY-MM."),
    "invalid_amount": N_("Give the amount in yuan, like 12.50."),
    "invalid_period": N_("That period cannot be shown (from after to, or longer than five years)."),
    "role_required": N_("Your account does not have the role for this page."),
    "operator_exists": N_("An operator with this name exists."),
    "invalid_operator": N_(
        "User names are 2 to 32 characters (a-z, 0-9, . _ -) and an account needs at "
        "least one role."
    ),
    "self": N_("You cannot disable your own account."),
    "invalid_csv": N_("The file must be a CSV file in UTF-8."),
}
GENERIC_ERROR = N_("The request could not be carried out.")


def error_text(request: web.Request, exc: DomainError) -> str:
    message = ERROR_MESSAGES.get(exc.code, GENERIC_ERROR)
    return gettext_for(request)(message)


def error_page(request: web.Request, exc: DomainError, back: str) -> web.Response:
    message = ERROR_MESSAGES.get(exc.code)
    text = error_text(request, exc)
    # The service's own sentence names the exact rule; in English it is shown too.
    detail = exc.message if language(request) == EN and message is None else None
    return render(
        request,
        "error.html",
        {"message": text, "detail": detail, "back": back},
        status=status_of(exc),
    )


def unexpected_error_page(request: web.Request, back: str) -> web.Response:
    """Logged once, with its traceback; the visitor gets words, never the trace."""
    log.exception("page_error", path=request.path)
    return render(
        request,
        "error.html",
        {"message": gettext_for(request)(GENERIC_ERROR), "detail": None, "back": back},
        status=500,
    )


# The guard of the cardholder's and the office's pages -------------------------------------


async def load_session(
    request: web.Request,
    cookie: str,
    authenticate: Callable[[str], Awaitable[T]],
    key: web.RequestKey[T],
) -> None:
    """The session of the cookie's token into request[key] while it is open; an unknown,
    expired or ended one is no session."""
    token = request.cookies.get(cookie, "")
    if not token:
        return
    try:
        request[key] = await authenticate(token)
    except NotAuthenticated:
        return
    request[SESSION_TOKEN] = token


async def answer_page(
    request: web.Request, back: str, answer: Callable[[], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The page `answer` gives, errors as a page in words (a database outage stays the
    gateway's own 503), and the headers of every page."""
    try:
        response = await answer()
    except DomainError as exc:
        response = error_page(request, exc, back)
    except web.HTTPException:
        raise
    except Exception as exc:
        if database_unavailable(exc):
            raise  # the gateway's own 503 answer
        response = unexpected_error_page(request, back)
    return finish(request, response)


def request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None
