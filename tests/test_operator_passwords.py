"""An operator's password set (demo) and reset (by an administrator): stored, unlocked,
every session ended, audited; only the reset asks for a change at the next login. Failed
logins and password changes: audited, and one hash whatever the reason."""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pos_gateway.domain.audit import Actor
from pos_gateway.errors import NoSuchRecord, NotAuthenticated, NotPermitted
from pos_gateway.http.state import SERVICES
from pos_gateway.security.pins import PinHasher
from pos_gateway.services.operators import OperatorService
from pos_gateway.settings import Settings
from pos_gateway.web.core import PAGES

from .conftest import World
from .page_helpers import PASSWORD, operator

ACTOR = Actor("operator", "tester", "127.0.0.1")


async def _actions(db, username: str) -> list[str]:
    rows = await db.fetch(
        "SELECT action FROM audit_log WHERE subject_kind = 'operator' AND subject_id = $1 "
        "ORDER BY audit_id",
        username,
    )
    return [r["action"] for r in rows]


async def test_reset_ends_sessions_and_the_new_password_must_be_changed(world: World, db) -> None:
    operators = world.client.server.app[PAGES].operators
    username = await operator(world.client, ["counter"])
    before = await operators.login(username, PASSWORD, actor=ACTOR)
    await operators.authenticate(before.token)

    password = await operators.reset_password(username, actor=ACTOR)

    with pytest.raises(NotAuthenticated):
        await operators.authenticate(before.token)
    with pytest.raises(NotAuthenticated):
        await operators.login(username, PASSWORD, actor=ACTOR)
    after = await operators.login(username, password, actor=ACTOR)
    assert after.must_change_password is True
    assert (await _actions(db, username))[-3:-1] == [
        "operator.password_reset",
        "operator.login_failed",
    ]


async def test_set_password_ends_sessions_and_needs_no_change(world: World, db) -> None:
    operators = world.client.server.app[PAGES].operators
    username = await operator(world.client, ["counter"])
    before = await operators.login(username, PASSWORD, actor=ACTOR)

    await operators.set_password(username, "Other-pass-2047", actor=ACTOR)

    with pytest.raises(NotAuthenticated):
        await operators.authenticate(before.token)
    after = await operators.login(username, "Other-pass-2047", actor=ACTOR)
    assert after.must_change_password is False
    assert "operator.password_set" in await _actions(db, username)


async def test_unknown_operator_is_no_such_record(world: World) -> None:
    operators = world.client.server.app[PAGES].operators
    with pytest.raises(NoSuchRecord):
        await operators.reset_password("nobody-here", actor=ACTOR)
    with pytest.raises(NoSuchRecord):
        await operators.set_password("nobody-here", "Other-pass-2047", actor=ACTOR)


async def test_wrong_passwords_are_audited_with_the_count_and_the_lock(world: World, db) -> None:
    operators = world.client.server.app[PAGES].operators
    username = await operator(world.client, ["counter"])
    for _ in range(5):
        with pytest.raises(NotAuthenticated):
            await operators.login(username, "Wrong-pass-123", actor=ACTOR)
    rows = await db.fetch(
        "SELECT details FROM audit_log WHERE action = 'operator.login_failed' "
        "AND subject_id = $1 ORDER BY audit_id",
        username,
    )
    details = [
        json.loads(r["details"]) if isinstance(r["details"], str) else r["details"] for r in rows
    ]
    assert [d["consecutive_failures"] for d in details] == [1, 2, 3, 4, 5]
    assert [d["locked"] for d in details] == [False, False, False, False, True]


class _CountingHasher(PinHasher):
    """The real hasher, counting its verifications (a dummy one included)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.verifications = 0

    def verify(self, pin_hash: str, pin: str) -> bool:
        self.verifications += 1
        return super().verify(pin_hash, pin)


async def test_every_failed_login_costs_one_hash_locked_included(
    world: World, settings: Settings
) -> None:
    """Unknown, disabled, wrong password and locked: the same work, so the answer's time
    does not tell them apart."""
    hasher = _CountingHasher(settings.secrets.pin_pepper, settings.argon2)
    pages = world.client.server.app[PAGES].operators
    with ThreadPoolExecutor(max_workers=1) as executor:
        operators = OperatorService(world.client.server.app[SERVICES].pool, hasher, executor)
        wrong = await operator(world.client, ["counter"])
        locked = await operator(world.client, ["counter"])
        disabled = await operator(world.client, ["counter"])
        await pages.set_disabled(disabled, True, actor=ACTOR)
        for _ in range(5):
            with pytest.raises(NotAuthenticated):
                await operators.login(locked, "Wrong-pass-123", actor=ACTOR)

        spent = {}
        for case, username in [
            ("unknown", "nobody-here"),
            ("disabled", disabled),
            ("wrong", wrong),
            ("locked", locked),
        ]:
            before = hasher.verifications
            with pytest.raises((NotAuthenticated, NotPermitted)):
                await operators.login(username, "Wrong-pass-123", actor=ACTOR)
            spent[case] = hasher.verifications - before
    assert spent == {"unknown": 1, "disabled": 1, "wrong": 1, "locked": 1}


async def test_a_wrong_old_password_at_a_change_is_audited_without_secrets(
    world: World, db
) -> None:
    operators = world.client.server.app[PAGES].operators
    username = await operator(world.client, ["counter"])
    login = await operators.login(username, PASSWORD, actor=ACTOR)
    session = await operators.authenticate(login.token)
    actor = session.actor("127.0.0.1", None)

    for _ in range(2):
        with pytest.raises(NotPermitted):
            await operators.change_password(
                session, "Wrong-pass-123", "Brand-new-pass-42", actor=actor
            )

    rows = await db.fetch(
        "SELECT actor_id, details::text FROM audit_log "
        "WHERE action = 'operator.password_change_failed' AND subject_id = $1 "
        "ORDER BY audit_id",
        username,
    )
    assert [r["actor_id"] for r in rows] == [username, username]
    assert [json.loads(r["details"]) for r in rows] == [
        {"consecutive_failures": 1, "locked": False},
        {"consecutive_failures": 2, "locked": False},
    ]
    assert not any(secret in r["details"] for r in rows for secret in ("Wrong-pass", "Brand-new"))


async def test_unknown_and_disabled_names_lock_like_real_accounts(world: World, db) -> None:
    """Five wrong tries lock a real account; the same five lock an unknown or disabled name
    too, so the answers do not tell which names exist."""
    operators = world.client.server.app[PAGES].operators
    real = await operator(world.client, ["counter"])
    disabled = await operator(world.client, ["counter"])
    await operators.set_disabled(disabled, True, actor=ACTOR)
    unknown = f"nobody{secrets.token_hex(4)}"

    answers = {}
    for case, username in [("real", real), ("disabled", disabled), ("unknown", unknown)]:
        seen = []
        for _ in range(6):
            try:
                await operators.login(username, "Wrong-pass-123", actor=ACTOR)
            except (NotAuthenticated, NotPermitted) as exc:
                seen.append(exc.code)
        answers[case] = seen
    expected = ["login_failed"] * 5 + ["login_locked"]
    assert answers == {"real": expected, "disabled": expected, "unknown": expected}
    # The right password of a locked real account is refused too, as for the others.
    with pytest.raises(NotPermitted):
        await operators.login(real, PASSWORD, actor=ACTOR)


async def test_throttle_rows_of_unknown_names_are_pruned_when_over(world: World, db) -> None:
    operators = world.client.server.app[PAGES].operators
    stale = f"stale{secrets.token_hex(4)}"
    await db.execute(
        "INSERT INTO operator_login_throttle (username, failed_attempts, last_attempt_at) "
        "VALUES ($1, 3, now() - interval '2 hours')",
        stale,
    )
    with pytest.raises(NotAuthenticated):
        await operators.login(f"nobody{secrets.token_hex(4)}", "Wrong-pass-123", actor=ACTOR)
    assert (
        await db.fetchval("SELECT count(*) FROM operator_login_throttle WHERE username = $1", stale)
        == 0
    )
