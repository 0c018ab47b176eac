"""The audit trail: who, what, when, from where, for every state-changing operator and
cardholder action; never a PIN, password, key or token (nor in the logs)."""

from __future__ import annotations

import json
import re

import asyncpg
import pytest
from structlog.testing import capture_logs

from pos_gateway.domain.audit import Actor
from pos_gateway.store import audit

from .conftest import World
from .insurance_helpers import (
    NEW_PASSWORD,
    business_today,
    get,
    login,
    me,
    own_past_month,
    this_month,
    ym,
)

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def _trail(world: World, **query: str) -> list[dict]:
    return (await get(world, "/v1/admin/audit", limit="1000", **query))["entries"]


async def test_operator_actions_record_who_what_when_and_from_where(world: World) -> None:
    headers = {**world.headers, "X-Operator-Id": "counter-7.li", "X-Request-Id": "req-audit-1"}
    card = await world.card()
    resp = await world.client.post(
        f"/v1/admin/accounts/{card['account_id']}/freeze", headers=headers
    )
    assert resp.status == 200

    [entry] = await _trail(world, subject_kind="account", subject_id=str(card["account_id"]))

    assert entry["action"] == "account.frozen"
    assert (entry["actor_kind"], entry["actor_id"]) == ("operator", "counter-7.li")
    assert entry["remote_addr"] == "127.0.0.1"
    assert entry["request_id"] == "req-audit-1"
    assert entry["details"] == {"ssn": card["ssn"], "previous_status": "active"}
    assert entry["time"]


async def test_every_counter_and_cardholder_action_is_audited(world: World) -> None:
    merchant_id = await world.merchant()
    terminal = await world.terminal(merchant_id)
    card = await world.card()
    ssn, pan = card["ssn"], card["pan"]
    employer = await world.admin("/v1/admin/employers", {"name": "Audited Ltd"})
    employment = await world.admin(
        "/v1/admin/employments",
        {
            "ssn": ssn,
            "employer_id": employer["employer_id"],
            "hired_on": business_today().isoformat(),
        },
    )
    month = own_past_month()
    await world.admin(f"/v1/admin/people/{ssn}/contributions", {"month": ym(month)})
    await world.admin("/v1/admin/allocations", {"month": ym(month)}, status=200)
    await world.admin(f"/v1/admin/people/{ssn}/suspension", {"from_month": ym(this_month(1))})
    await world.admin(
        f"/v1/admin/people/{ssn}/resumption", {"from_month": ym(this_month(2))}, status=200
    )
    await world.admin(f"/v1/admin/merchants/{merchant_id}/suspend", status=200)
    await world.admin(f"/v1/admin/merchants/{merchant_id}/reinstate", status=200)
    await world.admin(
        f"/v1/admin/merchants/{merchant_id}/designation",
        {"designated_until": "2099-12-31"},
        status=200,
    )
    tid = terminal.config.terminal_id
    for action in ("disable", "enable", "rekey"):
        await world.admin(f"/v1/admin/terminals/{tid}/{action}", status=200)
    await world.admin(
        f"/v1/admin/cards/{pan}/pin-reset", {"ssn": ssn, "new_pin": "8642"}, status=200
    )
    reset = await world.admin(f"/v1/admin/people/{ssn}/password-reset", {"pan": pan}, status=200)
    token = (await login(world.client, ssn, reset["password"]))["token"]
    await me(
        world.client,
        token,
        "POST",
        "/v1/me/password",
        {"old_password": reset["password"], "new_password": NEW_PASSWORD},
    )
    card_id = (await me(world.client, token, "GET", "/v1/me"))["cards"][0]["card_id"]
    await me(
        world.client,
        token,
        "POST",
        f"/v1/me/cards/{card_id}/pin",
        {"old_pin": "8642", "new_pin": "739154"},
    )
    await me(world.client, token, "POST", f"/v1/me/cards/{card_id}/report-lost")
    replacement = await world.admin(f"/v1/admin/cards/{pan}/replace", {"ssn": ssn})
    await me(world.client, token, "POST", "/v1/me/logout")

    by_subject = {
        ("person", ssn): {
            "person.registered",
            "contribution.recorded",
            "insurance.suspension_declared",
            "insurance.resumed",
            "cardholder.password_reset",
            "cardholder.logged_in",
            "cardholder.password_changed",
            "cardholder.logged_out",
        },
        ("card", pan): {
            "card.issued",
            "card.pin_reset",
            "card.pin_changed",
            "card.reported_lost",
            "card.replaced",
        },
        ("card", replacement["pan"]): {"card.issued"},
        ("merchant", merchant_id): {
            "merchant.registered",
            "merchant.suspended",
            "merchant.reinstated",
            "merchant.designation_renewed",
        },
        ("terminal", tid): {
            "terminal.registered",
            "terminal.disabled",
            "terminal.enabled",
            "terminal.rekeyed",
        },
        ("employer", employer["employer_id"]): {"employer.registered"},
        ("employment", str(employment["employment_id"])): {"employment.registered"},
        ("allocation", ym(month)): {"allocation.posted"},
    }
    for (kind, subject), expected in by_subject.items():
        entries = await _trail(world, subject_kind=kind, subject_id=subject)
        assert {e["action"] for e in entries} >= expected, (kind, subject)
    person_entries = await _trail(world, subject_kind="person", subject_id=ssn)
    cardholder_kinds = {
        e["actor_kind"] for e in person_entries if e["action"].startswith("cardholder.logged")
    }
    assert cardholder_kinds == {"cardholder"}
    # The replacement is recorded on the old card too, naming the new one only masked.
    [replaced] = [e for e in await _trail(world, subject_id=pan) if e["action"] == "card.replaced"]
    assert replaced["details"]["replacement"].endswith(replacement["pan"][-4:])
    assert replacement["pan"] not in json.dumps(replaced)


async def test_no_pin_password_key_or_token_in_audit_or_logs(world: World, db) -> None:
    with capture_logs() as logs:
        card = await world.card(pin="5937")
        ssn, pan = card["ssn"], card["pan"]
        await world.admin(
            f"/v1/admin/cards/{pan}/pin-reset", {"ssn": ssn, "new_pin": "8264"}, status=200
        )
        first = await login(world.client, ssn, card["password"])
        await login(world.client, ssn, "Guess-Wrong-9", status=401)
        await me(
            world.client,
            first["token"],
            "POST",
            "/v1/me/password",
            {"old_password": card["password"], "new_password": "Secret-Plum-31"},
        )
        card_id = (await me(world.client, first["token"], "GET", "/v1/me"))["cards"][0]["card_id"]
        await me(
            world.client,
            first["token"],
            "POST",
            f"/v1/me/cards/{card_id}/pin",
            {"old_pin": "8264", "new_pin": "402917"},
        )
        replaced = await world.admin(f"/v1/admin/cards/{pan}/replace", {"ssn": ssn})
        terminal = await world.terminal()
        keys = await world.admin(
            f"/v1/admin/terminals/{terminal.config.terminal_id}/rekey", status=200
        )

    secrets = [
        "5937",
        "8264",
        "402917",
        replaced["pin"],
        "Secret-Plum-31",
        card["password"],
        "Guess-Wrong-9",
        first["token"],
        keys["mac_key"],
        keys["pin_key"],
        terminal.config.mac_key.hex(),
    ]
    rows = await db.fetch(
        "SELECT to_jsonb(a)::text AS row FROM audit_log a WHERE subject_id = ANY($1::text[])",
        [ssn, pan, terminal.config.terminal_id],
    )
    assert len(rows) >= 8
    text = "\n".join(r["row"] for r in rows)
    logged = json.dumps(logs, default=str)
    for secret in secrets:
        # Whole tokens only: a 4-digit PIN may well occur inside a random request id.
        alone = re.compile(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])")
        assert not alone.search(text), secret
        assert not alone.search(logged), secret


async def test_the_writer_refuses_secret_named_details(db) -> None:
    actor = Actor("system", "test")
    for field in ("pin", "new_pin", "password", "new_password", "token", "mac_key", "pin_key"):
        with pytest.raises(audit.SecretInAudit):
            await audit.record(db, actor, "card.pin_reset", "card", "x", {field: "1"})


async def test_the_audit_trail_is_append_only(world: World, db) -> None:
    await world.card()
    with pytest.raises(asyncpg.RaiseError):
        await db.execute("UPDATE audit_log SET actor_id = 'someone-else'")
    with pytest.raises(asyncpg.RaiseError):
        await db.execute("DELETE FROM audit_log")


async def test_audit_query_is_validated_and_pages(world: World) -> None:
    await world.card()
    await world.card()
    bad_kind = await get(world, "/v1/admin/audit", status=400, subject_kind="secrets")
    page = await get(world, "/v1/admin/audit", limit="2")
    more = await get(world, "/v1/admin/audit", limit="2", cursor=page["next_cursor"])

    assert bad_kind["error"]["code"] == "malformed_request"
    assert len(page["entries"]) == 2 and page["next_cursor"]
    assert more["entries"][0]["audit_id"] < page["entries"][-1]["audit_id"]
