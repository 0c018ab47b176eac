"""An operator's password set (demo) and reset (by an administrator): stored, unlocked,
every session ended, audited; only the reset asks for a change at the next login."""

from __future__ import annotations

import json

import pytest

from pos_gateway.domain.audit import Actor
from pos_gateway.errors import NoSuchRecord, NotAuthenticated
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
