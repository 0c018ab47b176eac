"""Response-code decisions of the terminal protocol (ISO 8583 meanings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from pos_gateway.domain.cards import card_expired

MAX_PIN_FAILURES = 3


class Code(StrEnum):
    APPROVED = "00"
    MERCHANT_NOT_DESIGNATED = "03"
    INVALID_TRANSACTION = "12"
    INVALID_AMOUNT = "13"
    INVALID_CARD = "14"
    LOST_CARD = "41"
    INSUFFICIENT_FUNDS = "51"
    EXPIRED_CARD = "54"
    INCORRECT_PIN = "55"
    NOT_PERMITTED = "57"
    EXCEEDS_AMOUNT_LIMIT = "61"
    RESTRICTED_CARD = "62"
    EXCEEDS_COUNT_LIMIT = "65"
    PIN_TRIES_EXCEEDED = "75"
    ISSUER_UNAVAILABLE = "91"
    DUPLICATE = "94"
    SYSTEM_MALFUNCTION = "96"


MESSAGES: dict[str, str] = {
    Code.APPROVED: "Approved",
    Code.MERCHANT_NOT_DESIGNATED: "Merchant not designated",
    Code.INVALID_TRANSACTION: "Invalid transaction",
    Code.INVALID_AMOUNT: "Invalid amount",
    Code.INVALID_CARD: "Invalid card number",
    Code.LOST_CARD: "Lost card",
    Code.INSUFFICIENT_FUNDS: "Insufficient funds",
    Code.EXPIRED_CARD: "Expired card",
    Code.INCORRECT_PIN: "Incorrect PIN",
    Code.NOT_PERMITTED: "Transaction not permitted to cardholder",
    Code.EXCEEDS_AMOUNT_LIMIT: "Exceeds daily amount limit",
    Code.EXCEEDS_COUNT_LIMIT: "Exceeds daily count limit",
    Code.RESTRICTED_CARD: "Restricted card",
    Code.PIN_TRIES_EXCEEDED: "PIN tries exceeded",
    Code.ISSUER_UNAVAILABLE: "Issuer unavailable",
    Code.DUPLICATE: "Duplicate transmission",
    Code.SYSTEM_MALFUNCTION: "System malfunction",
}

# Kinds a medical-insurance card may never be used for (the seed: "can not withdraw
# cash or transfer").
REFUSED_TYPES = frozenset({"cash_withdrawal", "transfer"})
PIN_TYPES = frozenset({"purchase", "balance_inquiry"})


@dataclass(frozen=True, slots=True)
class MerchantStanding:
    designated_from: date
    designated_until: date
    suspended: bool


@dataclass(frozen=True, slots=True)
class CardStanding:
    status: str  # active | lost | replaced
    expires_on: date
    pin_failures: int
    account_status: str  # active | frozen


def designation_active(merchant: MerchantStanding, today: date) -> bool:
    """A merchant may take cards only inside its designation period and when not suspended."""
    return not merchant.suspended and merchant.designated_from <= today <= merchant.designated_until


def decide_before_pin(
    *,
    txn_type: str,
    amount: int | None,
    max_amount: int,
    merchant: MerchantStanding,
    card: CardStanding | None,
    pan_luhn_ok: bool,
    today: date,
) -> Code | None:
    """The decline that needs no PIN check, or None when the PIN must be verified.

    Order matters: refused kinds and merchant standing concern the terminal, so they
    come first; card standing next, so a lost or expired card never costs a PIN hash.
    """
    if txn_type in REFUSED_TYPES:
        return Code.NOT_PERMITTED
    if not designation_active(merchant, today):
        return Code.MERCHANT_NOT_DESIGNATED
    if txn_type == "purchase" and (amount is None or amount <= 0 or amount > max_amount):
        return Code.INVALID_AMOUNT
    if card is None or not pan_luhn_ok:
        return Code.INVALID_CARD
    if card.status in ("lost", "replaced"):
        return Code.LOST_CARD
    if card_expired(card.expires_on, today):
        return Code.EXPIRED_CARD
    if card.pin_failures >= MAX_PIN_FAILURES:
        return Code.PIN_TRIES_EXCEEDED
    if card.account_status != "active":
        return Code.RESTRICTED_CARD
    return None


def decide_wrong_pin(failures_after: int) -> Code:
    """The answer to a wrong PIN, given the consecutive-failure count including this one."""
    if failures_after >= MAX_PIN_FAILURES:
        return Code.PIN_TRIES_EXCEEDED
    return Code.INCORRECT_PIN


def decide_refund(
    *, amount: int, max_amount: int, merchant: MerchantStanding, today: date
) -> Code | None:
    """Declines a refund gets before its original is looked at; the rest (12, 13 against
    what is left of the original) is decided atomically with the claim on the original."""
    if not designation_active(merchant, today):
        return Code.MERCHANT_NOT_DESIGNATED
    if amount <= 0 or amount > max_amount:
        return Code.INVALID_AMOUNT
    return None


@dataclass(frozen=True, slots=True)
class DailyUse:
    """A card's approved, not reversed purchases of the day and the policy's limits on
    them (None: no limit). Counted from the day's transactions, never kept as a total."""

    amount: int = 0
    count: int = 0
    amount_limit: int | None = None
    count_limit: int | None = None


NO_LIMITS = DailyUse()


@dataclass(frozen=True, slots=True)
class AfterPin:
    code: Code
    balance: int  # the account's balance after this request
    pin_failures: int  # the card's PIN-failure count after this request


def decide_after_pin(
    *,
    txn_type: str,
    amount: int | None,
    card_status: str,
    pin_failures: int,
    pin_try: int,
    account_status: str,
    balance: int,
    daily: DailyUse = NO_LIMITS,
    spend: int | None = None,
) -> AfterPin:
    """The answer to a request whose PIN was right, judged on the card and account as they
    are at the moment of the debit (rows locked): a card lost or frozen since it was first
    read is still refused, and a purchase never takes the balance below zero. The one
    decision for a lone request and for every request of a group commit.

    Every try is counted before its hash (`pin_try`: the count this request's own try
    took the card to), so a right PIN cannot come from a locked card. It forgives the
    tries counted up to and including its own, whatever the answer; tries counted after
    it (`pin_failures` now, above `pin_try`: requests still being checked elsewhere) stay.

    `daily` brings the card's spending limits (61 amount, 65 count); `spend` is what this
    purchase adds to the day's amount (its total; `amount` when not given)."""
    after = max(0, pin_failures - pin_try)
    if card_status != "active":
        return AfterPin(Code.LOST_CARD, balance, after)
    if account_status != "active":
        return AfterPin(Code.RESTRICTED_CARD, balance, after)
    if txn_type == "purchase":
        assert amount is not None
        if daily.count_limit is not None and daily.count + 1 > daily.count_limit:
            return AfterPin(Code.EXCEEDS_COUNT_LIMIT, balance, after)
        added = amount if spend is None else spend
        if daily.amount_limit is not None and daily.amount + added > daily.amount_limit:
            return AfterPin(Code.EXCEEDS_AMOUNT_LIMIT, balance, after)
        if amount > balance:
            return AfterPin(Code.INSUFFICIENT_FUNDS, balance, after)
        return AfterPin(Code.APPROVED, balance - amount, after)
    return AfterPin(Code.APPROVED, balance, after)
