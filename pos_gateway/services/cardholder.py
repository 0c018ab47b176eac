"""Cardholder self-service: login, password, PIN change, loss report, and the counter's
password reset. Sessions live in the database (hashed tokens), so any gateway process
serves any cardholder."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg
import structlog

from pos_gateway.domain.audit import CARDHOLDER, SYSTEM_ACTOR, Actor
from pos_gateway.domain.cards import mask_pan
from pos_gateway.domain.citizen_id import parse_citizen_id
from pos_gateway.domain.credentials import (
    LOCKOUT,
    MAX_LOGIN_FAILURES,
    SESSION_IDLE,
    SESSION_MAX,
    draw_first_password,
    failed_login_detail,
    password_problem,
    weak_pin_reason,
)
from pos_gateway.domain.decisions import MAX_PIN_FAILURES
from pos_gateway.errors import (
    ConflictsWithRecord,
    InvalidInput,
    NoSuchRecord,
    NotAuthenticated,
    NotPermitted,
)
from pos_gateway.security.pins import PinHasher, pin_acceptable
from pos_gateway.services import reports
from pos_gateway.services.admin import checked_ssn
from pos_gateway.store import audit, cardholders, people

log = structlog.get_logger("pos_gateway.cardholder")

_LOGIN_FAILED = "ID number or password is wrong"


def _login_locked() -> NotPermitted:
    return NotPermitted(
        f"login locked after {MAX_LOGIN_FAILURES} wrong passwords; try again later "
        "or have the password reset at a counter",
        code="login_locked",
    )


def token_digest(token: str) -> bytes:
    """Tokens carry 256 random bits, so a plain SHA-256 is enough to store them: nothing
    to brute-force, and the lookup is one index probe."""
    return hashlib.sha256(token.encode("ascii")).digest()


@dataclass(frozen=True, slots=True)
class Login:
    token: str = field(repr=False)
    expires_in: int
    must_change_password: bool


@dataclass(frozen=True, slots=True)
class Session:
    ssn: str
    token_hash: bytes = field(repr=False)
    password_change_required: bool


class CardholderService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        hasher: PinHasher,
        executor: Executor,
        today: Callable[[], date],
    ) -> None:
        self._pool = pool
        self._hasher = hasher
        self._executor = executor
        self._today = today

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # Login and sessions ---------------------------------------------------------------

    async def _password_matches(self, credentials: Any, password: str) -> bool:
        return await self._run(self._hasher.verify, credentials["password_hash"], password)

    async def login(self, ssn: str, password: str, *, actor: Actor) -> Login:
        """The ID number and password. The first login uses the first password (random,
        issued with the first card or by a counter reset) and opens a session that may
        only change it."""
        ssn = checked_ssn(ssn)
        actor = Actor(CARDHOLDER, ssn, actor.remote_addr, actor.request_id)
        async with self._pool.acquire() as conn:
            credentials = await cardholders.get_credentials(conn, ssn)
        if credentials is None:
            # The same answers (lockout included) and the same work (one hash) as for a
            # registered ID number: no probing for who has a card.
            async with self._pool.acquire() as conn:
                open_ = await cardholders.reserve_unknown_attempt(
                    conn, ssn, MAX_LOGIN_FAILURES, LOCKOUT
                )
            await self._run(self._hasher.dummy_verify, password)
            if not open_:
                raise _login_locked()
            raise NotAuthenticated(_LOGIN_FAILED, code="login_failed")
        async with self._pool.acquire() as conn:
            attempt = await cardholders.reserve_attempt(conn, ssn, MAX_LOGIN_FAILURES, LOCKOUT)
        if attempt is None:
            log.info("cardholder_login_locked", ssn=ssn)
            await self._run(self._hasher.dummy_verify, password)  # as for an unknown number
            raise _login_locked()
        matches = await self._password_matches(attempt, password)
        async with self._pool.acquire() as conn, conn.transaction():
            if not matches:
                await audit.record(
                    conn,
                    actor,
                    "cardholder.login_failed",
                    "person",
                    ssn,
                    failed_login_detail(attempt["failed_attempts"]),
                )
            else:
                await cardholders.login_succeeded(conn, ssn)
                token = secrets.token_urlsafe(32)
                await cardholders.create_session(
                    conn,
                    token_digest(token),
                    ssn,
                    attempt["must_change"],
                    SESSION_IDLE,
                    actor.remote_addr,
                )
                await audit.record(
                    conn,
                    actor,
                    "cardholder.logged_in",
                    "person",
                    ssn,
                    {"must_change_password": attempt["must_change"]},
                )
        if not matches:
            log.info("cardholder_login_failed", ssn=ssn, failures=attempt["failed_attempts"])
            raise NotAuthenticated(_LOGIN_FAILED, code="login_failed")
        log.info("cardholder_logged_in", ssn=ssn)
        return Login(
            token=token,
            expires_in=int(SESSION_IDLE.total_seconds()),
            must_change_password=attempt["must_change"],
        )

    async def authenticate(self, token: str) -> Session:
        row = await cardholders.touch_session(
            self._pool, token_digest(token), SESSION_IDLE, SESSION_MAX
        )
        if row is None:
            raise NotAuthenticated(
                "session unknown, expired or ended; log in again", code="no_session"
            )
        return Session(row["ssn"], token_digest(token), row["password_change_required"])

    async def logout(self, session: Session, *, actor: Actor) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await cardholders.revoke_session(conn, session.token_hash)
            await audit.record(conn, actor, "cardholder.logged_out", "person", session.ssn)

    async def change_password(
        self, session: Session, old_password: str, new_password: str, *, actor: Actor
    ) -> None:
        """Old password required; a wrong one counts toward the lockout (which also ends
        every session). Other sessions end when the password changes."""
        ssn = session.ssn
        problem = password_problem(
            new_password, ssn=ssn, birth_date=parse_citizen_id(ssn).birth_date
        )
        if problem is not None:
            raise InvalidInput(problem, code="weak_password")
        if new_password == old_password:
            raise InvalidInput("the new password must differ from the old", code="weak_password")
        async with self._pool.acquire() as conn:
            attempt = await cardholders.reserve_attempt(conn, ssn, MAX_LOGIN_FAILURES, LOCKOUT)
        if attempt is None:
            raise NotPermitted("login locked after too many wrong passwords", code="login_locked")
        matches = await self._password_matches(attempt, old_password)
        new_hash = await self._run(self._hasher.hash, new_password) if matches else None
        async with self._pool.acquire() as conn, conn.transaction():
            if new_hash is None:
                detail = failed_login_detail(attempt["failed_attempts"])
                if detail["locked"]:
                    await cardholders.revoke_sessions_of(conn, ssn)
                await audit.record(
                    conn, actor, "cardholder.password_change_failed", "person", ssn, detail
                )
            else:
                await cardholders.set_password(conn, ssn, new_hash)
                await cardholders.clear_password_change(conn, session.token_hash)
                await cardholders.revoke_sessions_of(conn, ssn, keep=session.token_hash)
                await audit.record(conn, actor, "cardholder.password_changed", "person", ssn)
        if new_hash is None:
            raise NotPermitted("the old password is wrong", code="wrong_password")

    async def reset_password_at_counter(
        self, ssn: str, pan: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> dict[str, Any]:
        """A forgotten password or a locked login: the operator checks the ID card against
        the card; a new random first password is issued (returned this once, to be handed
        to the holder), to be changed at the next login, and every session ends."""
        ssn = checked_ssn(ssn)
        async with self._pool.acquire() as conn:
            card = await people.get_card(conn, pan)
        if card is None or card["ssn"] != ssn:
            raise NoSuchRecord("no card with this number for this ID number")
        if card["status"] != "active":
            raise ConflictsWithRecord(
                "the card is not active; replace it first", code="card_not_active"
            )
        first_password = draw_first_password()
        first_hash = await self._run(self._hasher.hash, first_password)
        async with self._pool.acquire() as conn, conn.transaction():
            await cardholders.reset_to_initial(conn, ssn, first_hash)
            await cardholders.revoke_sessions_of(conn, ssn)
            await audit.record(
                conn, actor, "cardholder.password_reset", "person", ssn, {"card": mask_pan(pan)}
            )
        return {
            "ssn": ssn,
            "status": "password_reset",
            "must_change_password": True,
            "password": first_password,
        }

    async def set_chosen_password(
        self, ssn: str, password: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        """Set a password as if the holder had chosen it (no change required): the demo
        world's cards, so a tester can log in at once."""
        ssn = checked_ssn(ssn)
        problem = password_problem(password, ssn=ssn, birth_date=parse_citizen_id(ssn).birth_date)
        if problem is not None:
            raise InvalidInput(problem, code="weak_password")
        password_hash = await self._run(self._hasher.hash, password)
        async with self._pool.acquire() as conn, conn.transaction():
            await cardholders.set_chosen_password(conn, ssn, password_hash)
            await audit.record(conn, actor, "cardholder.password_set", "person", ssn)

    # Account and cards ----------------------------------------------------------------

    async def profile(self, ssn: str) -> dict[str, Any]:
        citizen = parse_citizen_id(ssn)
        async with self._pool.acquire() as conn:
            person = await people.person_with_account(conn, ssn)
            cards = await people.cards_of_person(conn, ssn)
        if person is None:
            raise NoSuchRecord("no such person")
        return {
            "ssn": ssn,
            "name": person["name"],
            "birth_date": citizen.birth_date.isoformat(),
            "sex": citizen.sex,
            "account": {
                "balance": person["balance"],
                "status": person["account_status"],
            },
            "cards": [_card_json(c, self._today()) for c in cards],
        }

    async def balance(self, ssn: str) -> dict[str, Any]:
        async with self._pool.acquire() as conn:
            person = await people.person_with_account(conn, ssn)
        if person is None:
            raise NoSuchRecord("no such person")
        return {
            "balance": person["balance"],
            "currency": "CNY",
            "account_status": person["account_status"],
        }

    async def statement(self, ssn: str, cursor: str | None, limit: int) -> reports.StatementPage:
        async with self._pool.acquire() as conn:
            person = await people.person_with_account(conn, ssn)
        if person is None:
            raise NoSuchRecord("no such person")
        return await reports.statement(self._pool, person["account_id"], cursor, limit)

    async def _own_card(self, ssn: str, card_id: int) -> asyncpg.Record:
        card = await people.get_card_by_id(self._pool, card_id)
        if card is None or card["ssn"] != ssn:
            raise NoSuchRecord("no such card of yours")
        return card

    async def change_pin(
        self, ssn: str, card_id: int, old_pin: str, new_pin: str, *, actor: Actor
    ) -> None:
        """Old PIN required: a wrong one counts like a wrong PIN at a terminal (the third
        locks the card until a counter reset). The new PIN must not be trivially weak."""
        if not pin_acceptable(new_pin) or not pin_acceptable(old_pin):
            raise InvalidInput("PINs are 4 to 12 digits", code="invalid_pin")
        card = await self._own_card(ssn, card_id)
        reason = weak_pin_reason(
            new_pin, birth_date=parse_citizen_id(ssn).birth_date, ssn=ssn, pan=card["pan"]
        )
        if reason is not None:
            raise InvalidInput(reason, code="weak_pin")
        if new_pin == old_pin:
            raise InvalidInput("the new PIN must differ from the old", code="weak_pin")
        if card["status"] != "active":
            raise ConflictsWithRecord(f"the card is {card['status']}", code="card_not_active")
        async with self._pool.acquire() as conn:
            attempt = await people.reserve_pin_attempt(conn, card_id, MAX_PIN_FAILURES)
        if attempt is None:
            raise NotPermitted(
                "PIN tries exceeded (or the card is no longer active): reset it at a counter",
                code="pin_locked",
            )
        matches = await self._run(self._hasher.verify, attempt["pin_hash"], old_pin)
        new_hash = await self._run(self._hasher.hash, new_pin) if matches else None
        async with self._pool.acquire() as conn, conn.transaction():
            if new_hash is None:
                await audit.record(
                    conn,
                    actor,
                    "card.pin_change_failed",
                    "card",
                    card["pan"],
                    {"pin_failures": attempt["pin_failures"]},
                )
            elif not await people.change_pin(conn, card_id, new_hash):
                raise ConflictsWithRecord("the card is no longer active", code="card_not_active")
            else:
                await audit.record(conn, actor, "card.pin_changed", "card", card["pan"])
        if new_hash is None:
            if attempt["pin_failures"] >= MAX_PIN_FAILURES:
                raise NotPermitted(
                    "wrong PIN; PIN tries exceeded: reset it at a counter", code="pin_locked"
                )
            raise NotPermitted("the old PIN is wrong", code="wrong_pin")
        log.info("pin_changed", pan=card["pan"])

    async def report_lost(self, ssn: str, card_id: int, *, actor: Actor) -> dict[str, Any]:
        async with self._pool.acquire() as conn, conn.transaction():
            card = await people.get_card_by_id(conn, card_id, for_update=True)
            if card is None or card["ssn"] != ssn:
                raise NoSuchRecord("no such card of yours")
            if card["status"] == "replaced":
                raise ConflictsWithRecord(
                    "the card was replaced; it is no longer in use", code="card_replaced"
                )
            if await people.mark_lost(conn, card_id):
                await audit.record(conn, actor, "card.reported_lost", "card", card["pan"])
        log.info("card_reported_lost", pan=card["pan"], channel="self_service")
        return {"card_id": card_id, "pan": mask_pan(card["pan"]), "status": "lost"}


def _card_json(card: Any, today: date) -> dict[str, Any]:
    return {
        "card_id": card["card_id"],
        "pan": mask_pan(card["pan"]),
        "status": card["status"],
        "expires_on": card["expires_on"].isoformat(),
        "expired": card["expires_on"] < today,
        "pin_locked": card["pin_failures"] >= MAX_PIN_FAILURES,
    }
