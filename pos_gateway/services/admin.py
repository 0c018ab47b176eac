"""Operator use cases: people and accounts, cards, merchants, terminals, contributions."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date

import asyncpg
import structlog

from pos_gateway.domain.cards import last_day_of_month, luhn_check_digit, luhn_valid
from pos_gateway.domain.citizen_id import InvalidCitizenId, parse_citizen_id
from pos_gateway.errors import BadRequest, Conflict, NotFound
from pos_gateway.security.keys import KeyWrapper, TerminalKeys
from pos_gateway.security.pins import PinHasher, generate_pin, pin_acceptable
from pos_gateway.store import merchants, people, terminals

log = structlog.get_logger("pos_gateway.admin")

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


@dataclass(frozen=True, slots=True)
class RegisteredTerminal:
    terminal_id: str
    merchant_id: str
    keys: TerminalKeys


def checked_ssn(ssn: object) -> str:
    if not isinstance(ssn, str):
        raise BadRequest("ssn must be a string", code="invalid_ssn")
    try:
        return parse_citizen_id(ssn).number
    except InvalidCitizenId as exc:
        raise BadRequest(
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

    async def _hash_pin(self, pin: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pin_executor, self._pins.hash, pin)

    # People and accounts ------------------------------------------------------------

    async def register_person(
        self, ssn: str, name: str, opening_allocation: int = 0
    ) -> dict[str, object]:
        """Person and individual account; an opening allocation is journaled. Idempotent on
        the SSN: registering again returns the existing account and credits nothing."""
        ssn = checked_ssn(ssn)
        async with self._pool.acquire() as conn, conn.transaction():
            created = await people.insert_person(conn, ssn, name)
            account = await people.ensure_account(conn, ssn)
            balance = account["balance"]
            if created and opening_allocation > 0:
                balance = await people.credit(
                    conn, account["account_id"], opening_allocation, "allocation", "opening"
                )
        log.info("person_registered", ssn=ssn, created=created)
        return {
            "ssn": ssn,
            "account_id": account["account_id"],
            "balance": balance,
            "created": created,
        }

    async def adjust_balance(self, account_id: int, amount: int, reference: str) -> int:
        """Credit an account by a journaled adjustment (positive amounts only)."""
        if amount <= 0:
            raise BadRequest("adjustment must be positive", code="invalid_amount")
        async with self._pool.acquire() as conn:
            balance = await people.credit(conn, account_id, amount, "adjustment", reference)
        if balance is None:
            raise NotFound("no such account")
        return balance

    async def set_account_frozen(self, account_id: int, frozen: bool) -> None:
        async with self._pool.acquire() as conn:
            if not await people.set_account_status(
                conn, account_id, "frozen" if frozen else "active"
            ):
                raise NotFound("no such account")

    async def record_contribution(
        self, ssn: str, month: date, employer_part: int, individual_part: int
    ) -> bool:
        ssn = checked_ssn(ssn)
        async with self._pool.acquire() as conn:
            if await people.get_person(conn, ssn) is None:
                raise NotFound("no such person")
            return await people.record_contribution(
                conn, ssn, month.replace(day=1), employer_part, individual_part
            )

    # Cards ----------------------------------------------------------------------------

    async def issue_card(
        self,
        ssn: str,
        *,
        pin: str | None = None,
        pan: str | None = None,
        expires_on: date | None = None,
    ) -> IssuedCard:
        """Issue a card on the person's account. Without `pin`, one is generated and
        returned once; without `pan`, a new number is drawn under the issuer BIN."""
        ssn = checked_ssn(ssn)
        if pin is not None and not pin_acceptable(pin):
            raise BadRequest("pin must be 4 to 12 digits", code="invalid_pin")
        if pan is not None and not (16 <= len(pan) <= 19 and luhn_valid(pan)):
            raise BadRequest(
                "pan must be 16 to 19 digits with a Luhn check digit", code="invalid_pan"
            )
        chosen_pin = pin if pin is not None else generate_pin()
        if expires_on is None:
            today = self._today()
            expires_on = last_day_of_month(today.year + CARD_VALIDITY_YEARS, today.month)
        pin_hash = await self._hash_pin(chosen_pin)
        async with self._pool.acquire() as conn:
            account = await people.get_account_by_ssn(conn, ssn)
            if account is None:
                raise NotFound("no such person; register the person first")
            for _ in range(5):
                number = pan or _draw_pan()
                try:
                    await people.insert_card(
                        conn, number, account["account_id"], expires_on, pin_hash
                    )
                except asyncpg.UniqueViolationError:
                    if pan is not None:
                        raise Conflict("a card with this number exists") from None
                    continue
                break
            else:  # pragma: no cover - 5 collisions in a 10^12 space
                raise Conflict("could not draw a free card number")
        log.info("card_issued", pan=number, account_id=account["account_id"])
        return IssuedCard(
            pan=number,
            account_id=account["account_id"],
            expires_on=expires_on,
            pin=None if pin is not None else chosen_pin,
        )

    async def card(self, pan: str) -> asyncpg.Record:
        async with self._pool.acquire() as conn:
            row = await people.get_card(conn, pan)
        if row is None:
            raise NotFound("no such card")
        return row

    async def report_lost(self, pan: str) -> None:
        async with self._pool.acquire() as conn:
            if not await people.set_card_status(conn, pan, "lost"):
                raise NotFound("no such card")
        log.info("card_reported_lost", pan=pan)

    async def reset_pin(self, pan: str, ssn: str, new_pin: str) -> None:
        """Counter PIN reset: the holder's ID number must match the card's account."""
        ssn = checked_ssn(ssn)
        if not pin_acceptable(new_pin):
            raise BadRequest("pin must be 4 to 12 digits", code="invalid_pin")
        pin_hash = await self._hash_pin(new_pin)
        async with self._pool.acquire() as conn:
            card = await people.get_card(conn, pan)
            if card is None or card["ssn"] != ssn:
                # One answer for both: the counter learns nothing about other people's cards.
                raise NotFound("no card with this number for this ID number")
            await people.reset_pin(conn, pan, pin_hash)
        log.info("pin_reset", pan=pan)

    # Merchants and terminals -----------------------------------------------------------

    async def register_merchant(
        self,
        name: str,
        kind: str,
        designated_from: date,
        designated_until: date,
        merchant_id: str | None = None,
    ) -> asyncpg.Record:
        if kind not in MERCHANT_KINDS:
            raise BadRequest("kind must be pharmacy or hospital", code="invalid_kind")
        if designated_until < designated_from:
            raise BadRequest("designation ends before it starts", code="invalid_period")
        async with self._pool.acquire() as conn:
            for _ in range(5):
                mid = merchant_id or "".join(secrets.choice("0123456789") for _ in range(15))
                try:
                    return await merchants.insert(
                        conn, mid, name, kind, designated_from, designated_until
                    )
                except asyncpg.UniqueViolationError:
                    if merchant_id is not None:
                        raise Conflict("merchant id exists") from None
            raise Conflict("could not draw a free merchant id")  # pragma: no cover

    async def register_terminal(
        self, merchant_id: str, terminal_id: str | None = None
    ) -> RegisteredTerminal:
        """New terminal with fresh keys; the clear keys leave the gateway only in this answer."""
        keys = TerminalKeys.generate()
        async with self._pool.acquire() as conn:
            if await merchants.get(conn, merchant_id) is None:
                raise NotFound("no such merchant")
            for _ in range(5):
                tid = terminal_id or "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
                try:
                    await terminals.insert(
                        conn,
                        tid,
                        merchant_id,
                        self._keys.wrap(keys.mac_key, tid, "mac"),
                        self._keys.wrap(keys.pin_key, tid, "pin"),
                    )
                except asyncpg.UniqueViolationError:
                    if terminal_id is not None:
                        raise Conflict("terminal id exists") from None
                    continue
                break
            else:  # pragma: no cover
                raise Conflict("could not draw a free terminal id")
        log.info("terminal_registered", terminal_id=tid, merchant_id=merchant_id)
        return RegisteredTerminal(terminal_id=tid, merchant_id=merchant_id, keys=keys)

    async def set_terminal_disabled(self, terminal_id: str, disabled: bool) -> None:
        async with self._pool.acquire() as conn:
            if not await terminals.set_status(
                conn, terminal_id, "disabled" if disabled else "active"
            ):
                raise NotFound("no such terminal")


def _draw_pan() -> str:
    body = ISSUER_BIN + "".join(secrets.choice("0123456789") for _ in range(12))
    return body + luhn_check_digit(body)
