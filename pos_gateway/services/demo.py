"""The demo world of DESIGN §7, built through the same services as the operator API.

Identities are fixed, so running it again reuses what exists: no card number is ever
duplicated. On a rerun the demo cards get their demo PIN back (a counter PIN reset) and
are topped up to their demo balance by a journaled adjustment, so the scripted session
can be run any number of times.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pos_gateway.domain.cards import card_expired, luhn_check_digit
from pos_gateway.domain.citizen_id import make_citizen_id
from pos_gateway.errors import ConflictsWithRecord
from pos_gateway.security.keys import KeyWrapper
from pos_gateway.services.admin import AdminService
from pos_gateway.services.cardholder import CardholderService
from pos_gateway.services.demo_settlement import covered_today, load_demo_settlement
from pos_gateway.services.operators import OperatorService, draw_operator_password
from pos_gateway.store import merchants, people, terminals

DEMO_BIN = "621799"
# One office account per role (DESIGN §11); their passwords are drawn anew at each run.
DEMO_OPERATORS = (("counter1", "counter"), ("officer1", "officer"), ("admin1", "admin"))
CONTRIBUTION_EMPLOYER = 60_000  # 600.00 CNY a month
CONTRIBUTION_INDIVIDUAL = 20_000


@dataclass(frozen=True, slots=True)
class DemoMerchant:
    merchant_id: str
    name: str
    kind: str
    designated: bool
    terminal_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DemoHolder:
    alias: str
    name: str
    birth: date
    status: str  # active | lost | expired
    balance: int
    contributions_stopped: bool = False


MERCHANTS = (
    DemoMerchant(
        "100000000000001", "Kangning Pharmacy", "pharmacy", True, ("PHARM001", "PHARM002")
    ),
    DemoMerchant("100000000000002", "City No.1 Hospital", "hospital", True, ("HOSP0001",)),
    DemoMerchant("100000000000003", "Old Bridge Pharmacy", "pharmacy", False, ("OLDPH001",)),
)

HOLDERS = (
    DemoHolder("card-01", "Wang Fang", date(1980, 3, 14), "active", 50_000),
    DemoHolder("card-02", "Li Wei", date(1975, 7, 2), "active", 48_000),
    DemoHolder("card-03", "Zhang Min", date(1990, 11, 23), "active", 120_000),
    DemoHolder("card-04", "Liu Yang", date(1968, 1, 30), "active", 30_000),
    DemoHolder("card-05", "Chen Jing", date(1985, 5, 9), "active", 75_000),
    DemoHolder("card-06", "Yang Li", date(1993, 9, 17), "active", 20_000),
    DemoHolder("card-07", "Zhao Qiang", date(1979, 12, 1), "active", 66_600),
    DemoHolder("card-08", "Huang Lei", date(1988, 4, 21), "active", 10_000),
    DemoHolder("card-09", "Zhou Xiu", date(1995, 6, 6), "active", 5_000),
    DemoHolder(
        "card-10", "Wu Gang", date(1960, 8, 8), "active", 90_000, contributions_stopped=True
    ),
    DemoHolder("lost-01", "Xu Ping", date(1972, 2, 29), "lost", 40_000),
    DemoHolder("expired-01", "Sun Hua", date(1958, 10, 10), "expired", 25_000),
)


def card_status(card: Any, today: date) -> str:
    """active | lost | expired | replaced, as a terminal would find the card today."""
    if card["status"] != "active":
        return card["status"]
    return "expired" if card_expired(card["expires_on"], today) else "active"


def demo_ssn(index: int, holder: DemoHolder) -> str:
    # Region 110105 (Chaoyang, Beijing); sequence odd for even indexes, for variety.
    return make_citizen_id("110105", holder.birth, 101 + index * 2 + index % 2)


def demo_pan(index: int) -> str:
    body = f"{DEMO_BIN}{index + 1:012d}"
    return body + luhn_check_digit(body)


def demo_pin(index: int) -> str:
    # The step keeps every demo PIN clear of the weak-PIN rule (a re-run resets them).
    return f"{(246813 + 97523 * index) % 1_000_000:06d}"


def _month_add(month: date, delta: int) -> date:
    total = month.year * 12 + month.month - 1 + delta
    return date(total // 12, total % 12 + 1, 1)


def demo_card_password(index: int) -> str:
    """A self-service password as if the holder had chosen it (drawn at each run)."""
    return f"Demo-{secrets.token_hex(4)}-{index + 1:02d}x"


async def build_demo_world(
    admin: AdminService,
    key_wrapper: KeyWrapper,
    pool: Any,
    today: date,
    admin_token: str,
    cardholder: CardholderService | None = None,
    operators: OperatorService | None = None,
) -> dict[str, Any]:
    """Create or reuse the demo world and return the JSON of DESIGN §7 and §11 (with
    `cardholder` and `operators`: each card's password and the office accounts)."""
    out: dict[str, Any] = {
        "merchants": [],
        "terminals": [],
        "cards": [],
        "admin_token": admin_token,
    }
    for merchant in MERCHANTS:
        if merchant.designated:
            period = (date(2020, 1, 1), today + timedelta(days=3 * 365))
        else:
            period = (date(2018, 1, 1), today - timedelta(days=60))
        async with pool.acquire() as conn:
            existing = await merchants.get(conn, merchant.merchant_id)
        if existing is None:
            await admin.register_merchant(
                merchant.name, merchant.kind, *period, merchant_id=merchant.merchant_id
            )
        out["merchants"].append(
            {
                "merchant_id": merchant.merchant_id,
                "name": merchant.name,
                "kind": merchant.kind,
                "designated": merchant.designated,
            }
        )
        for terminal_id in merchant.terminal_ids:
            out["terminals"].append(
                await _terminal(admin, key_wrapper, pool, merchant, terminal_id)
            )

    this_month = today.replace(day=1)
    for index, holder in enumerate(HOLDERS):
        card = await _cardholder(admin, pool, index, holder, today, this_month)
        if cardholder is not None:
            card["password"] = demo_card_password(index)
            await cardholder.set_chosen_password(card["ssn"], card["password"])
        out["cards"].append(card)
    if operators is not None:
        out["operators"] = []
        for username, role in DEMO_OPERATORS:
            password = draw_operator_password()
            await operators.ensure(username, [role], password)
            out["operators"].append({"username": username, "password": password, "role": role})
    # DESIGN §10: catalogue, policies, and whether the fund pays for each card today.
    out.update(await load_demo_settlement(pool, today))
    for card in out["cards"]:
        card["covered"] = await covered_today(pool, card["ssn"], today)
    return out


async def _terminal(
    admin: AdminService,
    key_wrapper: KeyWrapper,
    pool: Any,
    merchant: DemoMerchant,
    terminal_id: str,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await terminals.wrapped_keys(conn, terminal_id)
    if row is None:
        registered = await admin.register_terminal(merchant.merchant_id, terminal_id)
        mac_key, pin_key = registered.keys.mac_key, registered.keys.pin_key
    else:
        # Reuse: the demo tool holds the master key, so it can hand the same keys out again.
        mac_key = key_wrapper.unwrap(row["mac_key_wrapped"], terminal_id, "mac")
        pin_key = key_wrapper.unwrap(row["pin_key_wrapped"], terminal_id, "pin")
    return {
        "terminal_id": terminal_id,
        "merchant_id": merchant.merchant_id,
        "mac_key": mac_key.hex(),
        "pin_key": pin_key.hex(),
        "alias": terminal_id.lower(),
        "merchant_name": merchant.name,
        "designated": merchant.designated,
    }


async def _cardholder(
    admin: AdminService, pool: Any, index: int, holder: DemoHolder, today: date, this_month: date
) -> dict[str, Any]:
    ssn = demo_ssn(index, holder)
    pan, pin = demo_pan(index), demo_pin(index)
    person = await admin.register_person(ssn, holder.name, holder.balance)
    async with pool.acquire() as conn:
        card_exists = await people.pan_exists(conn, pan)
    if not card_exists:
        expires_on = (
            date(today.year - 1, 12, 31)
            if holder.status == "expired"
            else date(today.year + 8, 12, 31)
        )
        await admin.issue_card(ssn, pin=pin, pan=pan, expires_on=expires_on)
        if holder.status == "lost":
            await admin.report_lost(pan)
    else:
        await admin.reset_pin(pan, ssn, pin)
    balance = person["balance"]
    if balance < holder.balance:
        balance = await admin.adjust_balance(
            person["account_id"], holder.balance - balance, "demo top-up"
        )
    # Contributions: paid through this month, or through three months ago for the person
    # whose contributions stopped two months ago.
    last_paid = _month_add(this_month, -3 if holder.contributions_stopped else 0)
    for back in range(12):
        try:
            await admin.record_contribution(
                ssn, _month_add(last_paid, -back), CONTRIBUTION_EMPLOYER, CONTRIBUTION_INDIVIDUAL
            )
        except ConflictsWithRecord:
            pass  # the holder declared a suspension (cardholder API): that month is not paid
    return {
        "pan": pan,
        "pin": pin,
        "ssn": ssn,
        "balance": balance,
        # What the database says now (a card reported lost since the last run is lost).
        "status": card_status(await admin.card(pan), today),
        "alias": holder.alias,
        "holder": holder.name,
        "contributions_stopped": holder.contributions_stopped,
    }
