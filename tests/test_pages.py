"""The web pages over HTTP (DESIGN §11): roles on every office route, CSRF, cookies and
headers, escaping, languages, and the counter's and cardholder's main actions."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from pos_gateway import cli as gateway_cli
from pos_gateway.domain.display import format_cny, format_time, format_yuan, parse_yuan
from pos_gateway.logs import configure_logging
from pos_gateway.web import cardholder as cardholder_pages
from pos_gateway.web import office as office_pages
from pos_gateway.web.i18n import EN, ZH, negotiate

from .conftest import World
from .helpers import new_ssn
from .insurance_helpers import NEW_PASSWORD
from .page_helpers import PASSWORD, Browser, cardholder_login, office_login, operator

ROLES = ("counter", "officer", "admin")


def _office_routes() -> list[tuple[str, str, Any]]:
    out = []
    for route in office_pages.routes:
        assert isinstance(route, web.RouteDef)
        out.append((route.method, route.path, route.handler.office_access))
    return out


def _concrete(path: str, ssn: str) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(2):  # {action:a|b}: the first of the choices
            return match.group(2).split("|")[0]
        return {"ssn": ssn, "username": "nobody", "merchant_id": "X" * 15}.get(
            match.group(1), "ABCDEFGH"
        )

    return "/office" + re.sub(r"\{(\w+)(?::([^}]*))?\}", value, path)


# Roles -------------------------------------------------------------------------------------


def test_every_office_route_declares_who_may_use_it() -> None:
    routes = _office_routes()
    assert len(routes) > 25
    for method, path, access in routes:
        assert access in ("public", "any") or (
            isinstance(access, tuple) and set(access) <= set(ROLES)
        ), (method, path)
    public = {(m, p) for m, p, a in routes if a == "public"}
    assert public == {("GET", "/"), ("POST", "/login")}


def test_every_cardholder_route_is_wrapped() -> None:
    for route in cardholder_pages.routes:
        assert isinstance(route, web.RouteDef)
        assert getattr(route.handler, "page_access", None) in ("public", "cardholder", "asset")


async def test_every_office_route_refuses_a_wrong_role(world: World) -> None:
    ssn = (await world.card())["ssn"]
    browsers = {role: await office_login(world.client, [role]) for role in ROLES}
    checked = 0
    for method, path, access in _office_routes():
        if not isinstance(access, tuple):
            continue
        for role in ROLES:
            if role in access:
                continue
            browser = browsers[role]
            if method == "GET":
                status, text, _ = await browser.get(_concrete(path, ssn))
            else:
                status, text, _ = await browser.post(_concrete(path, ssn), {})
            assert status == 403, (method, path, role, status)
            assert "does not have the role" in text
            checked += 1
    assert checked > 35


async def test_office_routes_need_a_session(world: World) -> None:
    anonymous = Browser(world.client)
    await anonymous.get("/office/")
    for method, path, access in _office_routes():
        if access == "public":
            continue
        if method == "GET":
            status, _, resp = await anonymous.get(_concrete(path, "11010519800314101X"))
            assert status == 303 and resp.headers["Location"] == "/office/", path
        else:
            status, _, _ = await anonymous.post(_concrete(path, "11010519800314101X"), {})
            assert status == 401, path


async def test_a_role_taken_away_applies_at_once(world: World) -> None:
    browser = await office_login(world.client, ["counter", "admin"])
    assert (await browser.get("/office/operators"))[0] == 200
    await world.client.server.app[office_pages.services.__globals__["PAGES"]].operators.set_roles(
        browser.username, ["counter"]
    )
    assert (await browser.get("/office/operators"))[0] == 403


# Counter ------------------------------------------------------------------------------------


async def test_counter_pin_reset_compares_the_typed_id_number(world: World, db) -> None:
    card = await world.card(pin="4321")
    terminal = await world.terminal()
    counter = await office_login(world.client, ["counter"])
    status, page, _ = await counter.get(f"/office/people/{card['ssn']}")
    assert status == 200
    card_id = re.search(r'name="card_id">\s*<option value="(\d+)"', page).group(1)
    reset = {"card_id": card_id, "new_pin": "802417", "new_pin_again": "802417"}

    wrong, text, _ = await counter.post(
        f"/office/people/{card['ssn']}/pin-reset", {**reset, "typed_ssn": new_ssn()}
    )
    assert wrong == 400 and "does not match" in text
    _, still_old = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    right, text, _ = await counter.post(
        f"/office/people/{card['ssn']}/pin-reset",
        {**reset, "typed_ssn": card["ssn"]},
        **{"X-Operator-Id": "someone-else"},
    )
    assert right == 200 and "The PIN has been reset" in text
    _, with_new = await terminal.transact("purchase", pan=card["pan"], pin="802417", amount=100)
    assert still_old.response_code == with_new.response_code == "00"
    actor = await db.fetchval(
        "SELECT actor_kind || ':' || actor_id FROM audit_log WHERE action = 'card.pin_reset' "
        "AND subject_id = $1",
        card["pan"],
    )
    assert actor == f"operator:{counter.username}"


async def test_counter_password_reset_shows_a_random_password_once(world: World) -> None:
    card = await world.card()
    counter = await office_login(world.client, ["counter"])
    _, page, _ = await counter.get(f"/office/people/{card['ssn']}")
    card_id = re.search(r'name="card_id">\s*<option value="(\d+)"', page).group(1)
    status, text, resp = await counter.post(
        f"/office/people/{card['ssn']}/password-reset",
        {"card_id": card_id, "typed_ssn": card["ssn"]},
    )
    assert status == 200 and resp.headers["Cache-Control"] == "no-store"
    shown = re.search(r'class="mono secret">([^<]+)<', text).group(1)
    assert card["pan"][-6:] not in shown and shown != card["password"]

    holder = await cardholder_login(world.client, card["ssn"], shown)
    status, _, resp = await holder.get("/")
    assert status == 303 and resp.headers["Location"] == "/password"
    _, again, _ = await counter.get(f"/office/people/{card['ssn']}")
    assert shown not in again


async def test_counter_searches_by_name_and_id_number(world: World) -> None:
    ssn = new_ssn()
    await world.admin("/v1/admin/people", {"ssn": ssn, "name": "Qian Duoduo"})
    counter = await office_login(world.client, ["counter"])
    _, by_name, _ = await counter.get("/office/people?q=duoduo")
    _, by_id, _ = await counter.get(f"/office/people?q={ssn}")
    _, wildcard, _ = await counter.get("/office/people?q=%25")
    assert ssn in by_name and ssn in by_id
    assert ssn not in wildcard  # % is a character to look for, not "anything"


# Security ------------------------------------------------------------------------------------


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    world: World, db
) -> None:
    card = await world.card()
    holder = await cardholder_login(world.client, card["ssn"], card["password"])
    missing, _, _ = await holder.post(
        "/password",
        {"old_password": card["password"], "new_password": NEW_PASSWORD,
         "new_password_again": NEW_PASSWORD},
        csrf=False,
    )  # fmt: skip
    forged, text, _ = await holder.post(
        "/password",
        {"old_password": card["password"], "new_password": NEW_PASSWORD,
         "new_password_again": NEW_PASSWORD, "csrf": "0" * 64},
        csrf=False,
    )  # fmt: skip
    assert missing == forged == 403 and "The form has expired" in text
    must_change = await db.fetchval(
        "SELECT must_change FROM cardholder_credentials WHERE ssn = $1", card["ssn"]
    )
    assert must_change is True

    counter = await office_login(world.client, ["counter"])
    lost, _, _ = await counter.post(
        f"/office/people/{card['ssn']}/report-lost", {"card_id": "1"}, csrf=False
    )
    status = await db.fetchval("SELECT status FROM cards WHERE pan = $1", card["pan"])
    assert lost == 403 and status == "active"


async def test_login_form_needs_its_pre_session_token(world: World) -> None:
    card = await world.card()
    stranger = Browser(world.client)
    status, _, _ = await stranger.post(
        "/login", {"ssn": card["ssn"], "password": card["password"]}, csrf=False
    )
    assert status == 403
    assert "pos_me" not in stranger.cookies


async def test_session_cookie_flags_and_headers(world: World) -> None:
    card = await world.card()
    holder = Browser(world.client)
    await holder.get("/")
    _, _, resp = await holder.post("/login", {"ssn": card["ssn"], "password": card["password"]})
    [session_cookie] = [c for c in holder.last_set_cookies if c.startswith("pos_me=")]
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
    assert "Secure" not in session_cookie  # plain HTTP, no trusted proxy
    assert resp.headers["Cache-Control"] == "no-store"
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp
    assert "default-src 'none'" in csp

    proxied = Browser(world.client)
    await proxied.get("/")
    await proxied.post(
        "/login",
        {"ssn": card["ssn"], "password": card["password"]},
        **{"X-Forwarded-Proto": "https"},
    )
    [untrusted] = [c for c in proxied.last_set_cookies if c.startswith("pos_me=")]
    assert "Secure" not in untrusted  # the header alone is not believed


async def test_behind_a_trusted_proxy_the_cookie_is_secure(
    aiohttp_client, settings, world: World
) -> None:
    from dataclasses import replace

    from pos_gateway.app import create_app

    client = await aiohttp_client(create_app(replace(settings, trust_forwarded_proto=True)))
    card = await world.card()
    holder = Browser(client)
    await holder.get("/")
    await holder.post(
        "/login",
        {"ssn": card["ssn"], "password": card["password"]},
        **{"X-Forwarded-Proto": "https"},
    )
    [cookie] = [c for c in holder.last_set_cookies if c.startswith("pos_me=")]
    assert "Secure" in cookie


async def test_logout_ends_the_session_on_the_server(world: World) -> None:
    card = await world.card()
    holder = await cardholder_login(world.client, card["ssn"], card["password"])
    kept = dict(holder.cookies)
    await holder.get("/password")
    status, _, _ = await holder.post("/logout", {})
    assert status == 303
    replay = Browser(world.client)
    replay.cookies = kept
    status, _, resp = await replay.get("/password")
    assert status == 303 and resp.headers["Location"] == "/"

    office = await office_login(world.client, ["counter"])
    kept = dict(office.cookies)
    await office.get("/office/")
    await office.post("/office/logout", {})
    replay = Browser(world.client)
    replay.cookies = kept
    status, _, resp = await replay.get("/office/people")
    assert status == 303 and resp.headers["Location"] == "/office/"


async def test_names_are_escaped(world: World) -> None:
    ssn = new_ssn()
    name = '<script>alert("x")</script>'
    await world.admin("/v1/admin/people", {"ssn": ssn, "name": name})
    counter = await office_login(world.client, ["counter"])
    _, listed, _ = await counter.get(f"/office/people?q={ssn}")
    _, shown, _ = await counter.get(f"/office/people/{ssn}")
    for page in (listed, shown):
        assert "<script>" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


async def test_operator_login_locks_after_five_wrong_passwords(world: World) -> None:
    username = await operator(world.client, ["counter"])
    browser = Browser(world.client)
    await browser.get("/office/")
    statuses = []
    for _ in range(5):
        status, _, _ = await browser.post(
            "/office/login", {"username": username, "password": "Wrong-pass-123"}
        )
        statuses.append(status)
    locked, text, _ = await browser.post(
        "/office/login", {"username": username, "password": PASSWORD}
    )
    assert statuses == [401] * 5
    assert locked == 403 and "locked" in text


# Cardholder -----------------------------------------------------------------------------------


async def test_first_password_must_be_changed_before_anything_else(world: World) -> None:
    card = await world.card(balance=123_450)
    holder = await cardholder_login(world.client, card["ssn"], card["password"])
    for path in ("/", "/statement", "/coverage", "/pin"):
        status, _, resp = await holder.get(path)
        assert status == 303 and resp.headers["Location"] == "/password", path
    await holder.get("/password")
    mismatch, text, _ = await holder.post(
        "/password",
        {"old_password": card["password"], "new_password": NEW_PASSWORD,
         "new_password_again": NEW_PASSWORD + "x"},
    )  # fmt: skip
    assert mismatch == 400 and "not the same" in text
    await holder.get("/password")
    changed, _, _ = await holder.post(
        "/password",
        {"old_password": card["password"], "new_password": NEW_PASSWORD,
         "new_password_again": NEW_PASSWORD},
    )  # fmt: skip
    status, home, _ = await holder.get("/")
    assert changed == 200 and status == 200
    assert "¥1,234.50" in home


async def test_wrong_login_is_said_in_words_in_both_languages(world: World) -> None:
    card = await world.card()
    for language, words in (("en", "The ID number or the password is wrong."),
                            ("zh-CN,zh;q=0.9,en;q=0.8", "身份证号或登录密码错误。")):  # fmt: skip
        browser = Browser(world.client, language)
        await browser.get("/")
        status, text, _ = await browser.post(
            "/login", {"ssn": card["ssn"], "password": "Not-it-123"}
        )
        assert status == 401 and words in text and "Traceback" not in text


async def test_statement_period_balances_and_csv(world: World) -> None:
    card = await world.card(balance=10_000)
    terminal = await world.terminal()
    await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=1_250)
    holder = await cardholder_login(world.client, card["ssn"], card["password"])
    await holder.get("/password")
    await holder.post(
        "/password",
        {"old_password": card["password"], "new_password": NEW_PASSWORD,
         "new_password_again": NEW_PASSWORD},
    )  # fmt: skip
    status, page, _ = await holder.get("/statement")
    assert status == 200
    assert "¥100.00" in page and "-¥12.50" in page and "¥87.50" in page
    assert "Opening balance" in page and "Closing balance" in page
    csv_status, text, resp = await holder.get("/statement.csv")
    lines = text.splitlines()
    assert csv_status == 200 and resp.content_type == "text/csv"
    assert lines[0].startswith("time,kind,amount_cny")
    assert any(",purchase,-12.50,87.50," in line for line in lines)
    _, empty, _ = await holder.get("/statement?from=2001-01-01&to=2001-01-31")
    assert "Nothing in this period." in empty and empty.count("¥0.00") == 2


async def test_pages_speak_chinese_unless_english_ranks_higher(world: World) -> None:
    default = Browser(world.client, "")
    _, zh_page, resp = await default.get("/")
    english = Browser(world.client, "en-GB,en;q=0.9,zh-CN;q=0.5")
    _, en_page, _ = await english.get("/")
    assert "身份证号" in zh_page and resp.headers["Content-Language"] == "zh-CN"
    for words in ("ID number", "Password", "Log in"):
        assert words in en_page


# Small pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("", ZH),
        ("en", EN),
        ("zh-CN,zh;q=0.9,en;q=0.8", ZH),
        ("en-US,en;q=0.9,zh;q=0.8", EN),
        ("zh;q=0.5,en;q=0.5", ZH),
        ("fr,de;q=0.9", ZH),
        ("en;q=0", ZH),
    ],
)
def test_language_negotiation(header: str, language: str) -> None:
    assert negotiate(header) == language


def test_amounts_and_times_for_people() -> None:
    assert format_cny(123_450) == "¥1,234.50" and format_cny(-1_250) == "-¥12.50"
    assert format_yuan(123_450) == "1234.50" and format_yuan(5) == "0.05"
    assert format_time(datetime(2026, 1, 31, 16, 30, tzinfo=UTC)) == "2026-02-01 00:30:00"
    assert parse_yuan("12.5") == 1_250 and parse_yuan("1,234.50") == 123_450
    assert parse_yuan("1.234") is None and parse_yuan("-1") is None and parse_yuan("1e3") is None


async def test_operator_add_prints_a_one_time_password_once(
    gateway_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"clerk{new_ssn()[-6:].lower()}"
    try:
        rc = await asyncio.to_thread(
            gateway_cli.main, ["operator", "add", name, "--role", "counter"]
        )
        again = await asyncio.to_thread(
            gateway_cli.main, ["operator", "add", name, "--role", "officer"]
        )
    finally:
        configure_logging("info")
    out = capsys.readouterr()
    [password] = re.findall(r"one-time password[^:]*: (\S+)", out.out)
    assert rc == 0 and again == 1
    assert len(password) >= 10 and "exists" in out.err


async def test_idle_and_absolute_expiry_end_office_sessions(world: World, db) -> None:
    idle = await office_login(world.client, ["counter"])
    old = await office_login(world.client, ["counter"])
    await db.execute(
        "UPDATE operator_sessions SET expires_at = now() - interval '1 second' WHERE username = $1",
        idle.username,
    )
    await db.execute(
        "UPDATE operator_sessions SET created_at = now() - interval '9 hours' WHERE username = $1",
        old.username,
    )
    for browser in (idle, old):
        status, _, resp = await browser.get("/office/people")
        assert status == 303 and resp.headers["Location"] == "/office/"


async def test_json_answers_with_personal_data_are_not_cached(world: World) -> None:
    card = await world.card()
    issued = await world.client.get(f"/v1/admin/cards/{card['pan']}", headers=world.headers)
    login = await world.client.post(
        "/v1/me/login", json={"ssn": card["ssn"], "password": card["password"]}
    )
    health = await world.client.get("/healthz")
    assert issued.headers["Cache-Control"] == login.headers["Cache-Control"] == "no-store"
    assert "no-store" not in health.headers.get("Cache-Control", "")
