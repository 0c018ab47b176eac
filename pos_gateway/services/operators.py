"""Operator accounts of the office pages: add, log in (with lockout), sessions in the
database, roles, and the admin's account management. Every change is audited under the
operator who made it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from pos_gateway.domain.audit import OPERATOR, SYSTEM_ACTOR, Actor
from pos_gateway.domain.credentials import (
    LOCKOUT,
    MAX_LOGIN_FAILURES,
    SESSION_IDLE,
    SESSION_MAX,
    failed_login_detail,
)
from pos_gateway.domain.operators import (
    operator_password_problem,
    roles_problem,
    username_problem,
)
from pos_gateway.errors import (
    ConflictsWithRecord,
    InvalidInput,
    NoSuchRecord,
    NotAuthenticated,
    NotPermitted,
)
from pos_gateway.security.pins import PinHasher
from pos_gateway.services.cardholder import token_digest
from pos_gateway.store import audit, operators

log = structlog.get_logger("pos_gateway.operators")
_LOGIN_FAILED = "user name or password is wrong"


def _login_locked() -> NotPermitted:
    return NotPermitted(
        "login locked after too many wrong passwords; ask an administrator",
        code="login_locked",
    )


@dataclass(frozen=True, slots=True)
class OperatorSession:
    username: str
    roles: tuple[str, ...]
    must_change_password: bool
    token_hash: bytes = field(repr=False)

    def actor(self, remote_addr: str | None, request_id: str | None) -> Actor:
        return Actor(OPERATOR, self.username, remote_addr, request_id)


@dataclass(frozen=True, slots=True)
class OperatorLogin:
    token: str = field(repr=False)
    must_change_password: bool


def draw_operator_password() -> str:
    """A one-time password: 16 random URL-safe characters with letters and digits."""
    while True:
        password = secrets.token_urlsafe(12)
        if operator_password_problem(password) is None:
            return password


class OperatorService:
    def __init__(self, pool: asyncpg.Pool, hasher: PinHasher, executor: Executor) -> None:
        self._pool = pool
        self._hasher = hasher
        self._executor = executor

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def add(self, username: str, roles: list[str], *, actor: Actor = SYSTEM_ACTOR) -> str:
        """A new account with a one-time password (returned once, to be changed at the
        first login)."""
        problem = username_problem(username) or roles_problem(roles)
        if problem is not None:
            raise InvalidInput(problem, code="invalid_operator")
        password = draw_operator_password()
        password_hash = await self._run(self._hasher.hash, password)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await operators.insert(conn, username, password_hash, sorted(set(roles))):
                raise ConflictsWithRecord(
                    "an operator with this name exists", code="operator_exists"
                )
            await audit.record(
                conn, actor, "operator.added", "operator", username, {"roles": sorted(roles)}
            )
        log.info("operator_added", username=username, roles=sorted(roles))
        return password

    async def set_password(
        self, username: str, password: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        """A known password that needs no change (the demo world's operators)."""
        problem = operator_password_problem(password)
        if problem is not None:
            raise InvalidInput(problem, code="weak_password")
        await self._put_password(
            username, password, "operator.password_set", actor, must_change=False
        )

    async def ensure(
        self, username: str, roles: list[str], password: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        """Create the account if missing, then give it `roles` and `password` (demo)."""
        try:
            await self.add(username, roles, actor=actor)
        except ConflictsWithRecord:
            await self.set_roles(username, roles, actor=actor)
        await self.set_password(username, password, actor=actor)

    async def login(self, username: str, password: str, *, actor: Actor) -> OperatorLogin:
        async with self._pool.acquire() as conn:
            account = await operators.get(conn, username)
        if account is None or account["disabled"]:
            # The same answers (lockout included) and the same work (one hash) as for an
            # enabled account: no probing for which names exist.
            async with self._pool.acquire() as conn:
                open_ = await operators.reserve_unknown_attempt(
                    conn, username, MAX_LOGIN_FAILURES, LOCKOUT
                )
            await self._run(self._hasher.dummy_verify, password)
            if not open_:
                raise _login_locked()
            raise NotAuthenticated(_LOGIN_FAILED, code="login_failed")
        async with self._pool.acquire() as conn:
            attempt = await operators.reserve_attempt(conn, username, MAX_LOGIN_FAILURES, LOCKOUT)
        if attempt is None:
            # One hash as for a wrong password or an unknown name, so that the time of the
            # answer does not tell a locked account from the others.
            await self._run(self._hasher.dummy_verify, password)
            raise _login_locked()
        matches = await self._run(self._hasher.verify, attempt["password_hash"], password)
        actor = Actor(OPERATOR, username, actor.remote_addr, actor.request_id)
        token = secrets.token_urlsafe(32)
        async with self._pool.acquire() as conn, conn.transaction():
            if not matches:
                await audit.record(
                    conn,
                    actor,
                    "operator.login_failed",
                    "operator",
                    username,
                    failed_login_detail(attempt["failed_attempts"]),
                )
            else:
                await operators.login_succeeded(conn, username)
                await operators.create_session(
                    conn, token_digest(token), username, SESSION_IDLE, actor.remote_addr
                )
                await audit.record(conn, actor, "operator.logged_in", "operator", username)
        if not matches:
            log.info("operator_login_failed", username=username)
            raise NotAuthenticated(_LOGIN_FAILED, code="login_failed")
        log.info("operator_logged_in", username=username)
        return OperatorLogin(token=token, must_change_password=attempt["must_change"])

    async def authenticate(self, token: str) -> OperatorSession:
        row = await operators.touch_session(
            self._pool, token_digest(token), SESSION_IDLE, SESSION_MAX
        )
        if row is None:
            raise NotAuthenticated(
                "session unknown, expired or ended; log in again", code="no_session"
            )
        return OperatorSession(
            row["username"], tuple(row["roles"]), row["must_change"], token_digest(token)
        )

    async def logout(self, session: OperatorSession, *, actor: Actor) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await operators.revoke_session(conn, session.token_hash)
            await audit.record(conn, actor, "operator.logged_out", "operator", session.username)

    async def change_password(
        self, session: OperatorSession, old_password: str, new_password: str, *, actor: Actor
    ) -> None:
        problem = operator_password_problem(new_password)
        if problem is not None:
            raise InvalidInput(problem, code="weak_password")
        if new_password == old_password:
            raise InvalidInput("the new password must differ from the old", code="weak_password")
        async with self._pool.acquire() as conn:
            attempt = await operators.reserve_attempt(
                conn, session.username, MAX_LOGIN_FAILURES, LOCKOUT
            )
        if attempt is None:
            raise NotPermitted("login locked after too many wrong passwords", code="login_locked")
        if not await self._run(self._hasher.verify, attempt["password_hash"], old_password):
            async with self._pool.acquire() as conn:
                await audit.record(
                    conn,
                    actor,
                    "operator.password_change_failed",
                    "operator",
                    session.username,
                    failed_login_detail(attempt["failed_attempts"]),
                )
            raise NotPermitted("the old password is wrong", code="wrong_password")
        new_hash = await self._run(self._hasher.hash, new_password)
        async with self._pool.acquire() as conn, conn.transaction():
            await operators.set_password(conn, session.username, new_hash, must_change=False)
            await audit.record(
                conn, actor, "operator.password_changed", "operator", session.username
            )

    # Administration --------------------------------------------------------------------

    async def accounts(self) -> list[dict[str, Any]]:
        async with self._pool.acquire() as conn:
            rows = await operators.list_all(conn)
        return [dict(r) for r in rows]

    async def set_roles(
        self, username: str, roles: list[str], *, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        problem = roles_problem(roles)
        if problem is not None:
            raise InvalidInput(problem, code="invalid_operator")
        async with self._pool.acquire() as conn, conn.transaction():
            if await operators.get(conn, username) is None:
                raise NoSuchRecord("no such operator")
            await operators.set_roles(conn, username, sorted(set(roles)))
            await audit.record(
                conn, actor, "operator.roles_set", "operator", username, {"roles": sorted(roles)}
            )

    async def set_disabled(
        self, username: str, disabled: bool, *, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        if actor.kind == OPERATOR and actor.actor_id == username and disabled:
            raise ConflictsWithRecord(
                "an administrator cannot disable their own account", code="self"
            )
        async with self._pool.acquire() as conn, conn.transaction():
            if not await operators.set_disabled(conn, username, disabled):
                raise NoSuchRecord("no such operator")
            if disabled:
                await operators.revoke_sessions_of(conn, username)
            await audit.record(
                conn,
                actor,
                "operator.disabled" if disabled else "operator.enabled",
                "operator",
                username,
            )

    async def reset_password(self, username: str, *, actor: Actor = SYSTEM_ACTOR) -> str:
        """A new one-time password (returned once); unlocks and ends every session."""
        password = draw_operator_password()
        await self._put_password(
            username, password, "operator.password_reset", actor, must_change=True
        )
        return password

    async def _put_password(
        self, username: str, password: str, action: str, actor: Actor, *, must_change: bool
    ) -> None:
        """The new password stored (unlocked), every session of the account ended, audited."""
        password_hash = await self._run(self._hasher.hash, password)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await operators.set_password(
                conn, username, password_hash, must_change=must_change
            ):
                raise NoSuchRecord("no such operator")
            await operators.revoke_sessions_of(conn, username)
            await audit.record(conn, actor, action, "operator", username)
