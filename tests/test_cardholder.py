"""The cardholder API (/v1/me): login with the first password, lockout, sessions shared by
gateway processes, statement, contributions and coverage, PIN change, loss report and
suspension declared online."""

from __future__ import annotations

import csv
import hashlib
import io
import re

import pytest

from pos_gateway.app import create_app

from .conftest import World
from .insurance_helpers import (
    NEW_PASSWORD,
    business_today,
    cardholder,
    contribute,
    login,
    me,
    this_month,
    ym,
)

pytestmark = pytest.mark.usefixtures("ledger_clean")


# Login and password ---------------------------------------------------------------------


async def test_first_login_with_the_issued_password_allows_only_the_password_change(
    world: World,
) -> None:
    card = await world.card(balance=7_000)
    first = await login(world.client, card["ssn"], card["password"])
    token = first["token"]

    blocked = await me(world.client, token, "GET", "/v1/me/balance", status=403)
    weak = await me(
        world.client,
        token,
        "POST",
        "/v1/me/password",
        {"old_password": card["password"], "new_password": "password"},
        status=400,
    )
    await me(
        world.client,
        token,
        "POST",
        "/v1/me/password",
        {"old_password": card["password"], "new_password": NEW_PASSWORD},
    )
    balance = await me(world.client, token, "GET", "/v1/me/balance")

    assert first["must_change_password"] is True and first["token_type"] == "Bearer"
    assert blocked["error"]["code"] == "password_change_required"
    assert weak["error"]["code"] == "weak_password"
    assert balance == {"balance": 7_000, "currency": "CNY", "account_status": "active"}
    old = await login(world.client, card["ssn"], card["password"], status=401)
    new = await login(world.client, card["ssn"], NEW_PASSWORD)
    assert old["error"]["code"] == "login_failed"
    assert new["must_change_password"] is False


async def test_unknown_person_and_wrong_password_get_the_same_answer(world: World) -> None:
    card = await world.card()
    from .helpers import new_ssn

    nobody = await login(world.client, new_ssn(), "123456", status=401)
    wrong = await login(world.client, card["ssn"], "000000", status=401)
    malformed = await login(world.client, "12345", "123456", status=400)

    assert nobody == wrong
    assert malformed["error"]["code"] == "invalid_ssn"


async def test_fifth_wrong_password_locks_until_a_counter_reset(world: World, db) -> None:
    card = await world.card()
    codes = []
    for _ in range(5):
        wrong = await login(world.client, card["ssn"], "Wrong-guess-1", status=401)
        codes.append(wrong["error"]["code"])
    locked = await login(world.client, card["ssn"], card["password"], status=403)

    assert codes == ["login_failed"] * 5
    assert locked["error"]["code"] == "login_locked"
    failures = await db.fetchval(
        "SELECT failed_attempts FROM cardholder_credentials WHERE ssn = $1", card["ssn"]
    )
    assert failures == 5

    wrong_card = await world.admin(
        f"/v1/admin/people/{card['ssn']}/password-reset",
        {"pan": "6217990000999999994"},
        status=404,
    )
    reset = await world.admin(
        f"/v1/admin/people/{card['ssn']}/password-reset", {"pan": card["pan"]}, status=200
    )
    old_first = await login(world.client, card["ssn"], card["password"], status=401)
    again = await login(world.client, card["ssn"], reset["password"])
    assert old_first["error"]["code"] == "login_failed"
    assert reset["password"] != card["password"] and card["pan"][-6:] not in reset["password"]
    assert wrong_card["error"]["code"] == "not_found"
    assert reset["must_change_password"] is True
    assert again["must_change_password"] is True


async def test_four_wrong_passwords_then_the_right_one_clears_the_count(world: World) -> None:
    card, _ = await cardholder(world)
    for _ in range(4):
        await login(world.client, card["ssn"], "Wrong-guess-1", status=401)
    await login(world.client, card["ssn"], NEW_PASSWORD)
    for _ in range(4):
        await login(world.client, card["ssn"], "Wrong-guess-1", status=401)
    assert (await login(world.client, card["ssn"], NEW_PASSWORD))["token"]


async def test_wrong_old_passwords_lock_and_end_every_session(world: World) -> None:
    card, token = await cardholder(world)
    body = {"old_password": "Not-my-pass-1", "new_password": "Another-pass-77"}
    for _ in range(5):
        wrong = await me(world.client, token, "POST", "/v1/me/password", body, status=403)
        if wrong["error"]["code"] != "wrong_password":
            break
    gone = await me(world.client, token, "GET", "/v1/me/balance", status=401)
    locked = await login(world.client, card["ssn"], NEW_PASSWORD, status=403)

    assert gone["error"]["code"] == "no_session"
    assert locked["error"]["code"] == "login_locked"


async def test_password_change_ends_the_other_sessions(world: World) -> None:
    card, token = await cardholder(world)
    other = (await login(world.client, card["ssn"], NEW_PASSWORD))["token"]

    await me(
        world.client,
        token,
        "POST",
        "/v1/me/password",
        {"old_password": NEW_PASSWORD, "new_password": "Autumn-leaf-808"},
    )

    await me(world.client, token, "GET", "/v1/me/balance")
    await me(world.client, other, "GET", "/v1/me/balance", status=401)


# Sessions ---------------------------------------------------------------------------------


async def test_a_session_is_valid_on_every_gateway_process(
    world: World, aiohttp_client, settings, db
) -> None:
    second_gateway = await aiohttp_client(create_app(settings))
    _, token = await cardholder(world)

    on_second = await me(second_gateway, token, "GET", "/v1/me/balance")
    await me(second_gateway, token, "POST", "/v1/me/logout")
    on_first = await me(world.client, token, "GET", "/v1/me/balance", status=401)

    assert on_second["balance"] == 10_000
    assert on_first["error"]["code"] == "no_session"
    stored = await db.fetchval(
        "SELECT count(*) FROM cardholder_sessions WHERE token_hash = $1",
        hashlib.sha256(token.encode()).digest(),
    )
    assert stored == 1  # only the hash is kept; the token itself nowhere


async def test_an_idle_session_expires(world: World, db) -> None:
    _, token = await cardholder(world)
    await db.execute(
        "UPDATE cardholder_sessions SET expires_at = now() - interval '1 second' "
        "WHERE token_hash = $1",
        hashlib.sha256(token.encode()).digest(),
    )
    expired = await me(world.client, token, "GET", "/v1/me/balance", status=401)
    assert expired["error"]["code"] == "no_session"


@pytest.mark.parametrize(
    "authorization", ["", "Bearer", "Bearer short", "Basic abc", "Bearer " + "A" * 43]
)
async def test_missing_or_unknown_tokens_are_401(world: World, authorization: str) -> None:
    resp = await world.client.get("/v1/me", headers={"Authorization": authorization})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "no_session"


# Self-service queries ---------------------------------------------------------------------


async def test_profile_masks_the_card_number(world: World) -> None:
    card, token = await cardholder(world)
    profile = await me(world.client, token, "GET", "/v1/me")

    assert profile["ssn"] == card["ssn"]
    [listed] = profile["cards"]
    assert listed["pan"] == card["pan"][:6] + "*" * (len(card["pan"]) - 10) + card["pan"][-4:]
    assert listed["status"] == "active" and listed["pin_locked"] is False


async def test_statement_pages_and_downloads_as_csv(world: World) -> None:
    terminal = await world.terminal()
    card, token = await cardholder(world, balance=10_000)
    for amount in (100, 200, 300):
        await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=amount)

    page1 = await me(world.client, token, "GET", "/v1/me/statement", limit="2")
    page2 = await me(
        world.client, token, "GET", "/v1/me/statement", limit="2", cursor=page1["next_cursor"]
    )
    text = await me(world.client, token, "GET", "/v1/me/statement", format="csv")

    kinds = [(e["kind"], e["amount"]) for e in page1["entries"] + page2["entries"]]
    assert kinds == [("purchase", -300), ("purchase", -200), ("purchase", -100),
                     ("allocation", 10_000)]  # fmt: skip
    assert page2["next_cursor"] is None
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["amount"] for r in rows] == ["-3.00", "-2.00", "-1.00", "100.00"]  # yuan
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[0]["time"])  # Shanghai


async def test_contributions_and_coverage_of_the_cardholder(world: World) -> None:
    card, token = await cardholder(world)
    await contribute(world, card["ssn"], this_month(-1))

    notice = await me(
        world.client,
        token,
        "GET",
        "/v1/me/contributions",
        **{"from": ym(this_month(-1)), "to": ym(this_month(0))},
    )
    now = await me(world.client, token, "GET", "/v1/me/coverage")
    later = await me(world.client, token, "GET", "/v1/me/coverage", date=this_month(1).isoformat())

    assert [(m["month"], m["status"]) for m in notice["months"]] == [
        (ym(this_month(-1)), "paid"),
        (ym(this_month(0)), "missing"),
    ]
    assert now["covered"] and now["reason"] == "contribution_paid_for_previous_month"
    assert now["date"] == business_today().isoformat()
    assert not later["covered"]


# PIN change -------------------------------------------------------------------------------


async def _card_id(world: World, token: str) -> int:
    profile = await me(world.client, token, "GET", "/v1/me")
    return profile["cards"][0]["card_id"]


async def test_pin_change_needs_the_old_pin_and_the_new_one_works_at_the_pos(
    world: World,
) -> None:
    terminal = await world.terminal()
    card, token = await cardholder(world)
    path = f"/v1/me/cards/{await _card_id(world, token)}/pin"

    await me(world.client, token, "POST", path, {"old_pin": "4321", "new_pin": "739154"})

    _, old = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    _, new = await terminal.transact("purchase", pan=card["pan"], pin="739154", amount=100)
    assert old.body["response_code"] == "55"
    assert new.body["response_code"] == "00"


async def test_trivially_weak_pins_are_refused(world: World) -> None:
    card, token = await cardholder(world)
    path = f"/v1/me/cards/{await _card_id(world, token)}/pin"
    ssn = card["ssn"]
    birth_yymmdd = ssn[8:14]

    codes = []
    for pin in ("000000", "123456", "654321", birth_yymmdd, card["pan"][-6:], "4321"):
        answer = await me(
            world.client, token, "POST", path, {"old_pin": "4321", "new_pin": pin}, status=400
        )
        codes.append(answer["error"]["code"])
    malformed = await me(
        world.client, token, "POST", path, {"old_pin": "4321", "new_pin": "12ab"}, status=400
    )

    assert codes == ["weak_pin"] * 6
    assert malformed["error"]["code"] == "invalid_pin"


async def test_three_wrong_old_pins_lock_the_card_at_the_terminal_too(world: World) -> None:
    terminal = await world.terminal()
    card, token = await cardholder(world)
    path = f"/v1/me/cards/{await _card_id(world, token)}/pin"
    body = {"old_pin": "9999", "new_pin": "739154"}

    codes = [
        (await me(world.client, token, "POST", path, body, status=403))["error"]["code"]
        for _ in range(4)
    ]
    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert codes == ["wrong_pin", "wrong_pin", "pin_locked", "pin_locked"]
    assert answer.body["response_code"] == "75"


async def test_another_persons_card_is_not_found(world: World) -> None:
    _, token = await cardholder(world)
    _, other_token = await cardholder(world)
    other_id = await _card_id(world, other_token)

    answer = await me(
        world.client,
        token,
        "POST",
        f"/v1/me/cards/{other_id}/pin",
        {"old_pin": "4321", "new_pin": "739154"},
        status=404,
    )
    lost = await me(world.client, token, "POST", f"/v1/me/cards/{other_id}/report-lost", status=404)
    assert answer["error"]["code"] == lost["error"]["code"] == "not_found"


# Loss, suspension, flexible employment -------------------------------------------------------


async def test_card_reported_lost_online_is_41_at_the_terminal(world: World) -> None:
    terminal = await world.terminal()
    card, token = await cardholder(world)
    card_id = await _card_id(world, token)

    reported = await me(world.client, token, "POST", f"/v1/me/cards/{card_id}/report-lost")
    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert reported["status"] == "lost"
    assert answer.body["response_code"] == "41"


async def test_suspension_declared_online_stops_contributions(world: World) -> None:
    terminal = await world.terminal()
    card, token = await cardholder(world, balance=5_000)
    await contribute(world, card["ssn"], this_month(0))

    declared = await me(
        world.client,
        token,
        "POST",
        "/v1/me/suspension",
        {"from_month": ym(this_month(1))},
        status=201,
    )
    refused = await contribute(world, card["ssn"], this_month(1), status=409)
    covered_then = await me(
        world.client, token, "GET", "/v1/me/coverage", date=this_month(1).isoformat()
    )
    not_after = await me(
        world.client, token, "GET", "/v1/me/coverage", date=this_month(2).isoformat()
    )
    _, purchase = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=500)

    assert declared["from_month"] == ym(this_month(1))
    assert refused["error"]["code"] == "insurance_suspended"
    assert covered_then["covered"] and not not_after["covered"]
    assert not_after["reason"] == "insurance_suspended"
    assert purchase.body["response_code"] == "00"  # the balance stays usable


async def test_flexibly_employed_person_registers_themselves(world: World) -> None:
    _, token = await cardholder(world)
    started = business_today().replace(day=1)

    registered = await me(
        world.client,
        token,
        "POST",
        "/v1/me/flexible-employment",
        {"started_on": started.isoformat()},
        status=201,
    )
    twice = await me(
        world.client,
        token,
        "POST",
        "/v1/me/flexible-employment",
        {"started_on": started.isoformat()},
        status=409,
    )

    assert registered["kind"] == "flexible" and registered["registered_by"] == "cardholder"
    assert twice["error"]["code"] == "employment_open"


async def test_bodies_are_validated(world: World) -> None:
    _, token = await cardholder(world)
    extra = await me(
        world.client,
        token,
        "POST",
        "/v1/me/suspension",
        {"from_month": ym(this_month(1)), "why": "x"},
        status=400,
    )
    bad_month = await me(
        world.client, token, "POST", "/v1/me/suspension", {"from_month": "2026-13"}, status=400
    )
    resp = await world.client.post(
        "/v1/me/login", data=b"not json", headers={"Content-Type": "application/json"}
    )
    assert extra["error"]["code"] == bad_month["error"]["code"] == "malformed_request"
    assert resp.status == 400


async def test_card_digits_never_open_the_account_and_a_replacement_keeps_the_password(
    world: World,
) -> None:
    card = await world.card()
    ssn, old_pan = card["ssn"], card["pan"]
    await world.admin(f"/v1/admin/cards/{old_pan}/report-lost", status=200)
    replacement = await world.admin(f"/v1/admin/cards/{old_pan}/replace", {"ssn": ssn})

    by_old_digits = await login(world.client, ssn, old_pan[-6:], status=401)
    by_new_digits = await login(world.client, ssn, replacement["pan"][-6:], status=401)
    fresh = await login(world.client, ssn, card["password"])

    assert by_old_digits["error"]["code"] == by_new_digits["error"]["code"] == "login_failed"
    assert "password" not in replacement
    assert fresh["must_change_password"] is True
