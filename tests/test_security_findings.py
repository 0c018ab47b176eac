"""Findings of the security review (issue 10, point 6), each with the test that proves it
fixed."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pos_gateway.domain.credentials import LOCKOUT
from pos_gateway.security.pins import PinHasher
from pos_gateway.settings import SECRETS_FILE, ConfigError, Settings, ensure_embedded_secrets

from .conftest import World
from .helpers import new_ssn
from .insurance_helpers import cardholder


async def test_unknown_id_number_locks_and_costs_like_a_registered_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder who changed the password, a holder who never logged in (the random first
    password issued with the card) and an ID number nobody holds: the same answers, the
    lockout included, and every answer costs exactly one hash (verified or computed)."""
    changed, _ = await cardholder(world)
    never_logged_in = await world.card()
    hashes: list[str] = []
    verify, compute = PinHasher.verify, PinHasher.hash

    def counted_verify(self: PinHasher, pin_hash: str, pin: str) -> bool:
        hashes.append("verify")
        return verify(self, pin_hash, pin)

    def counted_hash(self: PinHasher, pin: str) -> str:
        hashes.append("hash")
        return compute(self, pin)

    monkeypatch.setattr(PinHasher, "verify", counted_verify)
    monkeypatch.setattr(PinHasher, "hash", counted_hash)
    seen: dict[str, tuple[list[tuple[int, str]], list[str]]] = {}
    for ssn in (changed["ssn"], never_logged_in["ssn"], new_ssn()):
        hashes.clear()
        answers = []
        for _ in range(6):
            resp = await world.client.post(
                "/v1/me/login", json={"ssn": ssn, "password": "Wrong-guess-1"}
            )
            answers.append((resp.status, (await resp.json())["error"]["code"]))
        seen[ssn] = (answers, list(hashes))

    expected = ([(401, "login_failed")] * 5 + [(403, "login_locked")], ["verify"] * 6)
    assert list(seen.values()) == [expected] * 3


async def _raw_request(world: World, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """A request written byte by byte, for headers the client library would not send."""
    url = world.client.make_url("/")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status = int(response.split(b" ", 2)[1])
    return status, response


@pytest.mark.parametrize("path", ["/v1/admin/cards/6217000000000000018", "/v1/me/balance"])
async def test_a_non_utf8_authorization_header_is_401(world: World, path: str) -> None:
    head = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + b"Authorization: Bearer \xff\xfe\x80abc\r\n"
    )

    status, response = await _raw_request(world, head)

    assert status == 401, response


@pytest.mark.parametrize("name", ["Zhang\u0000San", "Zhang\ud800San"])
async def test_nul_or_lone_surrogate_in_a_text_field_is_400(world: World, name: str) -> None:
    body = json.dumps({"ssn": new_ssn(), "name": name}).encode()  # \ud800 stays escaped
    resp = await world.client.post(
        "/v1/admin/people",
        data=body,
        headers={**world.headers, "Content-Type": "application/json"},
    )

    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_text"


async def test_a_value_the_database_cannot_take_is_400(world: World) -> None:
    """A query parameter that reaches the database unchecked (asyncpg.DataError): 400."""
    resp = await world.client.get(
        "/v1/admin/audit", params={"subject_id": "a\u0000b"}, headers=world.headers
    )

    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_value"


async def test_a_lone_surrogate_in_a_password_is_400(world: World) -> None:
    body = json.dumps({"ssn": new_ssn(), "password": "pass\ud800word"}).encode()
    resp = await world.client.post(
        "/v1/me/login", data=body, headers={"Content-Type": "application/json"}
    )

    assert resp.status == 400, await resp.text()


def _env(**extra: str) -> dict[str, str]:
    return {
        "POS_DATABASE_URL": "postgresql://nowhere/db",
        "POS_MASTER_KEY": os.urandom(32).hex(),
        "POS_PIN_PEPPER": os.urandom(32).hex(),
        "POS_ADMIN_TOKEN": "Kq3-" + os.urandom(24).hex(),
        **extra,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POS_ADMIN_TOKEN", "a"),
        ("POS_ADMIN_TOKEN", "a" * 64),
        ("POS_ADMIN_TOKEN", "admin-admin-" * 4),
        ("POS_MASTER_KEY", "00" * 32),
        ("POS_MASTER_KEY", "ab" * 32),
        ("POS_PIN_PEPPER", "0102" * 16),
    ],
)
def test_weak_admin_token_or_degenerate_key_is_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(_env(**{name: value}))
    assert Settings.from_env(_env()).secrets.admin_token  # the generated kind passes


def test_secrets_file_readable_by_others_is_made_private_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked by the explicit step of serve, migrate and demo-data that generates the
    file (Settings.from_env writes nothing)."""
    env = {"POS_DATA_DIR": str(tmp_path)}
    path = ensure_embedded_secrets(env)
    assert path == tmp_path / SECRETS_FILE
    first = Settings.from_env(env)
    path.chmod(0o644)

    assert ensure_embedded_secrets(env) == path
    again = Settings.from_env(env)

    assert again.secrets == first.secrets
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "0644" in capsys.readouterr().err


async def test_demo_data_over_an_existing_file_writes_it_0600(
    gateway_env: None, tmp_path: Path
) -> None:
    from .helpers import run_demo_data

    out = tmp_path / "demo.json"
    out.write_text("{}")
    out.chmod(0o644)

    world: dict[str, Any] = await run_demo_data(out)

    assert world["cards"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


async def test_answers_with_tokens_keys_pins_or_personal_data_are_no_store(
    world: World,
) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=1_000)
    first = await world.client.post(
        "/v1/me/login", json={"ssn": card["ssn"], "password": card["password"]}
    )
    _, purchase = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    private = {
        "terminal keys": await world.client.post(
            "/v1/admin/terminals",
            json={"merchant_id": await world.merchant()},
            headers=world.headers,
        ),
        "card view": await world.client.get(
            f"/v1/admin/cards/{card['pan']}", headers=world.headers
        ),
        "login token": first,
        "refused": await world.client.get("/v1/admin/cards/6217000000000000018"),
        "unknown route": await world.client.get("/v1/admin/nothing-here", headers=world.headers),
        "cardholder page": await world.client.get("/"),
        "office page": await world.client.get("/office/", allow_redirects=False),
    }
    public = {
        path: await world.client.get(path)
        for path in ("/healthz", "/metrics", "/v1/openapi.json", "/assets/pages.css")
    }

    assert purchase.status == first.status == 200
    for what, resp in private.items():
        assert resp.headers.get("Cache-Control") == "no-store", what
    for path, resp in public.items():
        assert resp.status == 200, path
        assert "no-store" not in resp.headers.get("Cache-Control", ""), path
    assert public["/assets/pages.css"].headers["Cache-Control"].startswith("public")


async def test_a_terminal_answer_is_no_store(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=1_000)
    body = terminal.transaction_body("balance_inquiry", pan=card["pan"], pin="4321")
    from terminal_sim.protocol import encode_body, signed_headers

    raw = encode_body(body)
    headers = signed_headers(
        terminal.config.terminal_id, terminal.config.mac_key, "POST", "/v1/transactions", raw
    )
    resp = await world.client.post("/v1/transactions", data=raw, headers=headers)

    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("pin", ["111111", "123456", "4321", "121212"])
async def test_counter_pin_reset_refuses_a_pin_self_service_refuses(world: World, pin: str) -> None:
    card = await world.card()

    refused = await world.admin(
        f"/v1/admin/cards/{card['pan']}/pin-reset", {"ssn": card["ssn"], "new_pin": pin}, 400
    )
    own_birth = card["ssn"][6:14]  # YYYYMMDD of the holder
    birthday = await world.admin(
        f"/v1/admin/cards/{card['pan']}/pin-reset", {"ssn": card["ssn"], "new_pin": own_birth}, 400
    )

    assert refused["error"]["code"] == birthday["error"]["code"] == "weak_pin"


async def test_the_audit_api_masks_card_numbers(world: World) -> None:
    card = await world.card()
    await world.admin(f"/v1/admin/cards/{card['pan']}/report-lost", status=200)

    resp = await world.client.get(
        "/v1/admin/audit",
        params={"subject_kind": "card", "subject_id": card["pan"]},
        headers=world.headers,
    )
    text = await resp.text()

    assert resp.status == 200 and card["pan"] not in text
    entries = (await resp.json())["entries"]
    assert {e["subject_id"] for e in entries} == {card["pan"][:6] + "*" * 9 + card["pan"][-4:]}
    assert {e["action"] for e in entries} >= {"card.issued", "card.reported_lost"}


async def _wrong_logins(world: World, ssn: str, times: int) -> list[int]:
    statuses = []
    for _ in range(times):
        resp = await world.client.post("/v1/me/login", json={"ssn": ssn, "password": "Wrong-1x"})
        statuses.append(resp.status)
    return statuses


async def test_a_run_of_wrong_passwords_lapses_after_the_lockout_period_for_everyone(
    world: World, db
) -> None:
    """Four wrong passwords, then a quiet lockout period: the next starts a new run, for
    a registered ID number as for one nobody holds (so a pruned login_throttle row, whose
    run is over, answers as it would have)."""
    registered, unknown = (await world.card())["ssn"], new_ssn()
    for ssn in (registered, unknown):
        assert await _wrong_logins(world, ssn, 4) == [401] * 4
    quiet = LOCKOUT + timedelta(minutes=1)
    await db.execute(
        "UPDATE cardholder_credentials SET last_attempt_at = now() - $2::interval WHERE ssn = $1",
        registered,
        quiet,
    )
    await db.execute(
        "UPDATE login_throttle SET last_attempt_at = now() - $2::interval WHERE ssn = $1",
        unknown,
        quiet,
    )
    for ssn in (registered, unknown):
        assert await _wrong_logins(world, ssn, 6) == [401] * 5 + [403]


async def test_login_throttle_rows_whose_run_is_over_are_pruned_at_unknown_logins(
    world: World, db
) -> None:
    old, recent = [new_ssn() for _ in range(3)], new_ssn()
    for ssn in [*old, recent]:
        await _wrong_logins(world, ssn, 1)
    # Run over (quiet for the lockout period), one of them locked back then.
    await db.execute(
        "UPDATE login_throttle SET last_attempt_at = now() - $2::interval, "
        "locked_until = CASE WHEN ssn = $3 THEN now() - interval '1 minute' END "
        "WHERE ssn = ANY($1::text[])",
        old,
        LOCKOUT + timedelta(seconds=1),
        old[0],
    )

    await _wrong_logins(world, new_ssn(), 1)

    left = await db.fetch(
        "SELECT ssn FROM login_throttle WHERE ssn = ANY($1::text[])", [*old, recent]
    )
    assert [r["ssn"] for r in left] == [recent]
