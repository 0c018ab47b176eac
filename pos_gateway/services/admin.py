"""Operator use cases: people and accounts, cards, merchants, terminals, contributions."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

import asyncpg
import structlog

from pos_gateway.domain.audit import SYSTEM_ACTOR, Actor
from pos_gateway.domain.cards import last_day_of_month, luhn_check_digit, luhn_valid, mask_pan
from pos_gateway.domain.citizen_id import InvalidCitizenId, parse_citizen_id
from pos_gateway.domain.coverage import contribution_refused
from pos_gateway.domain.credentials import draw_first_password, weak_pin_reason
from pos_gateway.domain.months import format_month
from pos_gateway.domain.resubmission import differences
from pos_gateway.errors import ConflictsWithRecord, InvalidInput, NoSuchRecord
from pos_gateway.security.keys import KeyWrapper, TerminalKeys
from pos_gateway.security.pins import PinHasher, generate_pin, pin_acceptable
from pos_gateway.store import (
    audit,
    cardholders,
    insurance,
    merchant_designations,
    merchants,
    people,
    terminal_keys,
    terminals,
)

log = structlog.get_logger("pos_gateway.admin")
T = TypeVar("T")

ISSUER_BIN = "621700"  # demo issuer identification number
CARD_VALIDITY_YEARS = 10
MERCHANT_KINDS = ("pharmacy", "hospital")
_ID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class IssuedCard:
    pan: str
    account_id: int
    expires_on: date
    pin: str | None = field(repr=False)  # set only when the gateway chose it
    # The holder's first self-service password, drawn with the person's first card and
    # shown this once; None when the person already had a password.
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RegisteredTerminal:
    terminal_id: str
    merchant_id: str
    keys: TerminalKeys


def checked_ssn(ssn: object) -> str:
    if not isinstance(ssn, str):
        raise InvalidInput("ssn must be a string", code="invalid_ssn")
    try:
        return parse_citizen_id(ssn).number
    except InvalidCitizenId as exc:
        raise InvalidInput(
            f"ssn is not a valid citizen ID number: {exc}", code="invalid_ssn"
        ) from None


class AdminService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        pin_hasher: PinHasher,
        pin_executor: Executor,
        key_wrapper: KeyWrapper,
        today: Callable[[], date],
    ) -> None:
        self._pool = pool
        self._pins = pin_hasher
        self._pin_executor = pin_executor
        self._keys = key_wrapper
        self._today = today

    def today(self) -> date:
        """Today in the business time zone (the scheme's days, not the server's)."""
        return self._today()

    async def _hash_pin(self, pin: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pin_executor, self._pins.hash, pin)

    # People and accounts ------------------------------------------------------------

    async def register_person(
        self, ssn: str, name: str, opening_allocation: int = 0, *, actor: Actor = SYSTEM_ACTOR
    ) -> dict[str, Any]:
        """Person and individual account; an opening allocation is journaled. Idempotent on
        the SSN: registering again returns the existing account and credits nothing."""
        ssn = checked_ssn(ssn)
        async with self._pool.acquire() as conn, conn.transaction():
            created = await people.insert_person(conn, ssn, name)
            if not created:
                differs = differences({"name": await people.person_name(conn, ssn)}, {"name": name})
                if differs:
                    raise ConflictsWithRecord(
                        f"this ID number is registered already with other data ({differs}); "
                        "nothing was changed",
                        code="person_differs",
                    )
            account = await people.ensure_account(conn, ssn)
            balance = account["balance"]
            if created and opening_allocation > 0:
                balance = await people.credit(
                    conn, account["account_id"], opening_allocation, "allocation", "opening"
                )
            if created:
                await audit.record(
                    conn,
                    actor,
                    "person.registered",
                    "person",
                    ssn,
                    {"account_id": account["account_id"], "opening_allocation": opening_allocation},
                )
        log.info("person_registered", ssn=ssn, created=created)
        return {
            "ssn": ssn,
            "account_id": account["account_id"],
            "balance": balance,
            "created": created,
        }

    async def adjust_balance(
        self, account_id: int, amount: int, reference: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> int:
        """Credit an account by a journaled adjustment (positive amounts only)."""
        if amount <= 0:
            raise InvalidInput("adjustment must be positive", code="invalid_amount")
        async with self._pool.acquire() as conn, conn.transaction():
            balance = await people.credit(conn, account_id, amount, "adjustment", reference)
            if balance is None:
                raise NoSuchRecord("no such account")
            await audit.record(
                conn,
                actor,
                "account.adjusted",
                "account",
                str(account_id),
                {"amount": amount, "reference": reference},
            )
        return balance

    async def set_account_frozen(
        self, account_id: int, frozen: bool, *, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        """Freeze (every card of the account answers 62) or unfreeze an account."""
        status = "frozen" if frozen else "active"
        async with self._pool.acquire() as conn, conn.transaction():
            account = await people.lock_account(conn, account_id)
            if account is None:
                raise NoSuchRecord("no such account")
            await people.set_account_status(conn, account_id, status)
            await audit.record(
                conn,
                actor,
                "account.frozen" if frozen else "account.unfrozen",
                "account",
                str(account_id),
                {"ssn": account["ssn"], "previous_status": account["status"]},
            )

    async def record_contribution(
        self,
        ssn: str,
        month: date,
        employer_part: int,
        individual_part: int,
        *,
        actor: Actor = SYSTEM_ACTOR,
    ) -> bool:
        """Record a month's contribution; False when that month is already recorded. A
        month inside a declared suspension is refused (409): the suspension stopped it."""
        ssn = checked_ssn(ssn)
        month = month.replace(day=1)
        async with self._pool.acquire() as conn, conn.transaction():
            # The person's row lock orders this against a suspension being declared.
            if await insurance.lock_person(conn, ssn) is None:
                raise NoSuchRecord("no such person")
            refused_by = contribution_refused(month, await insurance.suspensions_of(conn, ssn))
            if refused_by is not None:
                raise ConflictsWithRecord(
                    f"insurance is suspended from {format_month(refused_by.from_month)}: "
                    f"no contribution is accepted for {format_month(month)}",
                    code="insurance_suspended",
                )
            created = await people.record_contribution(
                conn, ssn, month, employer_part, individual_part
            )
            if not created:
                recorded = await people.contribution_for_update(conn, ssn, month)
                sent = {"employer_part": employer_part, "individual_part": individual_part}
                differs = None if recorded is None else differences(dict(recorded), sent)
                if differs:
                    raise ConflictsWithRecord(
                        f"{format_month(month)} is recorded with other amounts ({differs}); "
                        f"nothing was changed. To change it: POST /v1/admin/people/{ssn}/"
                        f"contributions/{format_month(month)}/correction (audited)",
                        code="contribution_differs",
                    )
            if created:
                await audit.record(
                    conn,
                    actor,
                    "contribution.recorded",
                    "person",
                    ssn,
                    {
                        "month": format_month(month),
                        "employer_part": employer_part,
                        "individual_part": individual_part,
                    },
                )
            return created

    async def correct_contribution(
        self,
        ssn: str,
        month: date,
        employer_part: int,
        individual_part: int,
        reason: str,
        *,
        actor: Actor = SYSTEM_ACTOR,
    ) -> dict[str, object]:
        """Change a recorded month's amounts, with the reason, in the audit trail. A month
        already allocated is refused (409): the allocation credited the old amounts, and
        the difference is settled by an adjustment, not by rewriting history."""
        ssn = checked_ssn(ssn)
        month = month.replace(day=1)
        async with self._pool.acquire() as conn, conn.transaction():
            recorded = await people.contribution_for_update(conn, ssn, month)
            if recorded is None:
                raise NoSuchRecord(f"no contribution recorded for {format_month(month)}")
            if recorded["allocated"]:
                raise ConflictsWithRecord(
                    f"{format_month(month)} was allocated already; it cannot be corrected",
                    code="contribution_allocated",
                )
            before = {k: recorded[k] for k in ("employer_part", "individual_part")}
            after = {"employer_part": employer_part, "individual_part": individual_part}
            if before != after:
                await people.correct_contribution(conn, ssn, month, employer_part, individual_part)
                await audit.record(
                    conn,
                    actor,
                    "contribution.corrected",
                    "person",
                    ssn,
                    {
                        "month": format_month(month),
                        "before": before,
                        "after": after,
                        "reason": reason,
                    },
                )
        return {"month": format_month(month), **after, "corrected": before != after}

    # Cards ----------------------------------------------------------------------------

    async def issue_card(
        self,
        ssn: str,
        *,
        pin: str | None = None,
        pan: str | None = None,
        expires_on: date | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> IssuedCard:
        """Issue a card on the person's account. Without `pin`, one is generated and
        returned once; without `pan`, a new number is drawn under the issuer BIN."""
        ssn = checked_ssn(ssn)
        if pin is not None and not pin_acceptable(pin):
            raise InvalidInput("pin must be 4 to 12 digits", code="invalid_pin")
        if pan is not None and not (16 <= len(pan) <= 19 and luhn_valid(pan)):
            raise InvalidInput(
                "pan must be 16 to 19 digits with a Luhn check digit", code="invalid_pan"
            )
        chosen_pin = pin if pin is not None else generate_pin()
        if expires_on is None:
            expires_on = self._default_expiry()
        pin_hash = await self._hash_pin(chosen_pin)
        first_password = draw_first_password()
        # Same hasher and pepper as the cardholder login (CardholderService).
        first_password_hash = await self._hash_pin(first_password)
        password_issued = False
        async with self._pool.acquire() as conn:
            account = await people.get_account_by_ssn(conn, ssn)
            if account is None:
                raise NoSuchRecord("no such person; register the person first")

            async def insert(number: str) -> None:
                async with conn.transaction():
                    nonlocal password_issued
                    await people.insert_card(
                        conn, number, account["account_id"], expires_on, pin_hash
                    )
                    password_issued = await cardholders.create_initial_credentials(
                        conn, ssn, first_password_hash
                    )
                    await audit.record(
                        conn,
                        actor,
                        "card.issued",
                        "card",
                        number,
                        {
                            "account_id": account["account_id"],
                            "ssn": ssn,
                            "first_password_issued": password_issued,
                        },
                    )

            number, _ = await _insert_with_fresh_pan(pan, insert)
        log.info("card_issued", pan=number, account_id=account["account_id"])
        return IssuedCard(
            pan=number,
            account_id=account["account_id"],
            expires_on=expires_on,
            pin=None if pin is not None else chosen_pin,
            password=first_password if password_issued else None,
        )

    async def card(self, pan: str) -> asyncpg.Record:
        async with self._pool.acquire() as conn:
            row = await people.get_card(conn, pan)
        if row is None:
            raise NoSuchRecord("no such card")
        return row

    async def report_lost(self, pan: str, *, actor: Actor = SYSTEM_ACTOR) -> None:
        """Active -> lost (answered 41 from then on). Reporting a lost card again is a
        no-op; a card already replaced stays 'replaced'."""
        async with self._pool.acquire() as conn, conn.transaction():
            card = await people.lock_card(conn, pan)
            if card is None:
                raise NoSuchRecord("no such card")
            if card["status"] == "replaced":
                raise ConflictsWithRecord(
                    "the card was replaced; it is no longer in use", code="card_replaced"
                )
            if await people.mark_lost(conn, card["card_id"]):
                await audit.record(
                    conn, actor, "card.reported_lost", "card", pan, {"ssn": card["ssn"]}
                )
        log.info("card_reported_lost", pan=pan)

    async def reset_pin(
        self, pan: str, ssn: str, new_pin: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        """Counter PIN reset: the holder's ID number must match the card's account. Clears
        the PIN lockout."""
        ssn = checked_ssn(ssn)
        if not pin_acceptable(new_pin):
            raise InvalidInput("pin must be 4 to 12 digits", code="invalid_pin")
        # The rule self-service applies (domain/credentials.py), so a counter reset is no
        # way around it.
        weak = weak_pin_reason(
            new_pin, birth_date=parse_citizen_id(ssn).birth_date, ssn=ssn, pan=pan
        )
        if weak is not None:
            raise InvalidInput(weak, code="weak_pin")
        pin_hash = await self._hash_pin(new_pin)
        async with self._pool.acquire() as conn, conn.transaction():
            card = await people.get_card(conn, pan)
            if card is None or card["ssn"] != ssn:
                # One answer for both: the counter learns nothing about other people's cards.
                raise NoSuchRecord("no card with this number for this ID number")
            await people.reset_pin(conn, pan, pin_hash)
            await audit.record(
                conn,
                actor,
                "card.pin_reset",
                "card",
                pan,
                {"ssn": ssn, "pin_failures_cleared": card["pin_failures"]},
            )
        log.info("pin_reset", pan=pan)

    async def replace_card(
        self,
        pan: str,
        ssn: str,
        *,
        pin: str | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> IssuedCard:
        """A new card (new number) on the same account, so the same balance; the old card
        becomes 'replaced' and is answered 41. The holder's ID number must match."""
        ssn = checked_ssn(ssn)
        if pin is not None and not pin_acceptable(pin):
            raise InvalidInput("pin must be 4 to 12 digits", code="invalid_pin")
        chosen_pin = pin if pin is not None else generate_pin()
        pin_hash = await self._hash_pin(chosen_pin)
        expires_on = self._default_expiry()
        async with self._pool.acquire() as conn:

            async def insert(number: str) -> asyncpg.Record:
                async with conn.transaction():
                    old = await people.lock_card(conn, pan)
                    if old is None or old["ssn"] != ssn:
                        raise NoSuchRecord("no card with this number for this ID number")
                    if old["status"] == "replaced":
                        raise ConflictsWithRecord(
                            "the card was already replaced", code="card_replaced"
                        )
                    new = await people.insert_replacement_card(
                        conn, old["card_id"], number, old["account_id"], expires_on, pin_hash
                    )
                    await audit.record(
                        conn,
                        actor,
                        "card.replaced",
                        "card",
                        pan,
                        {
                            "ssn": ssn,
                            "account_id": old["account_id"],
                            "previous_status": old["status"],
                            "replacement": mask_pan(number),
                        },
                    )
                    await audit.record(
                        conn,
                        actor,
                        "card.issued",
                        "card",
                        number,
                        {
                            "account_id": old["account_id"],
                            "ssn": ssn,
                            "replaces": mask_pan(pan),
                        },
                    )
                    return new

            number, new = await _insert_with_fresh_pan(None, insert)
        log.info("card_replaced", pan=pan, account_id=new["account_id"])
        return IssuedCard(
            pan=number,
            account_id=new["account_id"],
            expires_on=expires_on,
            pin=None if pin is not None else chosen_pin,
        )

    def _default_expiry(self) -> date:
        today = self._today()
        return last_day_of_month(today.year + CARD_VALIDITY_YEARS, today.month)

    # Merchants and terminals -----------------------------------------------------------

    async def register_merchant(
        self,
        name: str,
        kind: str,
        designated_from: date,
        designated_until: date,
        merchant_id: str | None = None,
        *,
        actor: Actor = SYSTEM_ACTOR,
    ) -> asyncpg.Record:
        if kind not in MERCHANT_KINDS:
            raise InvalidInput("kind must be pharmacy or hospital", code="invalid_kind")
        if designated_until < designated_from:
            raise InvalidInput("designation ends before it starts", code="invalid_period")
        async with self._pool.acquire() as conn:
            for _ in range(5):
                mid = merchant_id or "".join(secrets.choice("0123456789") for _ in range(15))
                try:
                    async with conn.transaction():
                        row = await merchants.insert(
                            conn, mid, name, kind, designated_from, designated_until
                        )
                        await audit.record(
                            conn,
                            actor,
                            "merchant.registered",
                            "merchant",
                            mid,
                            {
                                "kind": kind,
                                "designated_from": designated_from,
                                "designated_until": designated_until,
                            },
                        )
                        return row
                except asyncpg.UniqueViolationError:
                    if merchant_id is not None:
                        raise ConflictsWithRecord("merchant id exists") from None
            raise ConflictsWithRecord("could not draw a free merchant id")  # pragma: no cover

    async def merchant(self, merchant_id: str) -> asyncpg.Record:
        async with self._pool.acquire() as conn:
            row = await merchants.get(conn, merchant_id)
        if row is None:
            raise NoSuchRecord("no such merchant")
        return row

    async def renew_designation(
        self,
        merchant_id: str,
        designated_until: date,
        designated_from: date | None = None,
        *,
        actor: Actor = SYSTEM_ACTOR,
    ) -> asyncpg.Record:
        """A new validity period (typically a later end); the terminal path applies it at
        once. Suspension is separate: renewing does not lift it."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await merchants.get(conn, merchant_id)
            if current is None:
                raise NoSuchRecord("no such merchant")
            start = designated_from or current["designated_from"]
            if designated_until < start:
                raise InvalidInput("designation ends before it starts", code="invalid_period")
            row = await merchant_designations.set_period(conn, merchant_id, start, designated_until)
            await audit.record(
                conn,
                actor,
                "merchant.designation_renewed",
                "merchant",
                merchant_id,
                {
                    "previous_until": current["designated_until"],
                    "designated_from": start,
                    "designated_until": designated_until,
                },
            )
        return row

    async def set_merchant_suspended(
        self, merchant_id: str, suspended: bool, *, actor: Actor = SYSTEM_ACTOR
    ) -> asyncpg.Record:
        """A suspended merchant's terminals are answered 03 until it is reinstated."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await merchant_designations.set_suspended(conn, merchant_id, suspended)
            if row is None:
                raise NoSuchRecord("no such merchant")
            await audit.record(
                conn,
                actor,
                "merchant.suspended" if suspended else "merchant.reinstated",
                "merchant",
                merchant_id,
            )
        return row

    async def register_terminal(
        self, merchant_id: str, terminal_id: str | None = None, *, actor: Actor = SYSTEM_ACTOR
    ) -> RegisteredTerminal:
        """New terminal with fresh keys; the clear keys leave the gateway only in this answer."""
        keys = TerminalKeys.generate()
        async with self._pool.acquire() as conn:
            if await merchants.get(conn, merchant_id) is None:
                raise NoSuchRecord("no such merchant")
            for _ in range(5):
                tid = terminal_id or "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
                try:
                    async with conn.transaction():
                        await terminals.insert(
                            conn,
                            tid,
                            merchant_id,
                            self._keys.wrap(keys.mac_key, tid, "mac"),
                            self._keys.wrap(keys.pin_key, tid, "pin"),
                        )
                        await audit.record(
                            conn,
                            actor,
                            "terminal.registered",
                            "terminal",
                            tid,
                            {"merchant_id": merchant_id},
                        )
                except asyncpg.UniqueViolationError:
                    if terminal_id is not None:
                        raise ConflictsWithRecord("terminal id exists") from None
                    continue
                break
            else:  # pragma: no cover
                raise ConflictsWithRecord("could not draw a free terminal id")
        log.info("terminal_registered", terminal_id=tid, merchant_id=merchant_id)
        return RegisteredTerminal(terminal_id=tid, merchant_id=merchant_id, keys=keys)

    async def set_terminal_disabled(
        self, terminal_id: str, disabled: bool, *, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await terminals.set_status(
                conn, terminal_id, "disabled" if disabled else "active"
            ):
                raise NoSuchRecord("no such terminal")
            await audit.record(
                conn,
                actor,
                "terminal.disabled" if disabled else "terminal.enabled",
                "terminal",
                terminal_id,
            )

    async def rekey_terminal(
        self, terminal_id: str, *, actor: Actor = SYSTEM_ACTOR
    ) -> RegisteredTerminal:
        """Fresh MAC and PIN keys, returned once. The terminal path unwraps keys from the
        row on every request, so the old keys stop working when this commits."""
        keys = TerminalKeys.generate()
        async with self._pool.acquire() as conn, conn.transaction():
            row = await terminals.wrapped_keys(conn, terminal_id)
            if row is None:
                raise NoSuchRecord("no such terminal")
            await terminal_keys.replace_keys(
                conn,
                terminal_id,
                self._keys.wrap(keys.mac_key, terminal_id, "mac"),
                self._keys.wrap(keys.pin_key, terminal_id, "pin"),
            )
            await audit.record(conn, actor, "terminal.rekeyed", "terminal", terminal_id)
        log.info("terminal_rekeyed", terminal_id=terminal_id)
        return RegisteredTerminal(
            terminal_id=terminal_id, merchant_id=row["merchant_id"], keys=keys
        )


async def _insert_with_fresh_pan(
    given: str | None, insert: Callable[[str], Awaitable[T]]
) -> tuple[str, T]:
    """Run `insert(number)` with the given card number, or with drawn numbers until one is
    free (a drawn number that exists is simply drawn again)."""
    for _ in range(5):
        number = given or _draw_pan()
        try:
            return number, await insert(number)
        except asyncpg.UniqueViolationError:
            if given is not None:
                raise ConflictsWithRecord("a card with this number exists") from None
    raise ConflictsWithRecord(
        "could not draw a free card number"
    )  # pragma: no cover - 10^12 numbers


def _draw_pan() -> str:
    body = ISSUER_BIN + "".join(secrets.choice("0123456789") for _ in range(12))
    return body + luhn_check_digit(body)
