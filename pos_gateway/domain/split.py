"""The settlement split of an itemised purchase (DESIGN §10): pooled fund, individual
account, cash.

One pure function, `split_purchase`, computes every part in integer fen; the trial, the
purchase and the tests all call it. Nothing here reads a clock or a database: coverage,
the policy and the person's year accumulators come in as values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pos_gateway.domain.decisions import NO_LIMITS, Code, DailyUse, decide_after_pin

BP = 10_000  # basis points in a whole
CATEGORIES = frozenset({"A", "B", "C"})


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    code: str
    category: str  # A: fully eligible; B: eligible after self_pay_bp; C: not eligible
    self_pay_bp: int = 0


@dataclass(frozen=True, slots=True)
class Line:
    item: CatalogueItem
    quantity: int
    unit_price: int

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True, slots=True)
class Policy:
    """Of one merchant kind and calendar year."""

    deductible: int
    fund_ratio_bp: int
    annual_cap: int
    daily_amount_limit: int | None = None
    daily_count_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Accumulators:
    """The person's pair for the calendar year, shared by every merchant kind."""

    deductible_used: int = 0
    fund_used: int = 0


@dataclass(frozen=True, slots=True)
class Split:
    total: int
    eligible: int
    deductible_applied: int
    fund: int
    account: int
    cash: int
    covered: bool

    def as_json(self) -> dict[str, int | bool]:
        return {
            "total": self.total,
            "eligible": self.eligible,
            "deductible_applied": self.deductible_applied,
            "fund": self.fund,
            "account": self.account,
            "cash": self.cash,
            "covered": self.covered,
        }

    @property
    def pays_something(self) -> bool:
        """Approved only when the fund or the account pays part of it (else 51)."""
        return self.fund + self.account > 0


def line_eligible(line: Line) -> int:
    """A: the whole line; B: the line less its self-pay share (floored); C: nothing."""
    category = line.item.category
    if category == "A":
        return line.amount
    if category == "B":
        return line.amount - line.amount * line.item.self_pay_bp // BP
    return 0


def split_purchase(
    lines: Sequence[Line],
    *,
    covered: bool,
    policy: Policy | None,
    used: Accumulators,
    balance: int,
    account_max: int | None = None,
) -> Split:
    """Who pays what of `lines`, for a person with `used` this year and `balance` in the
    individual account. With no policy for the merchant's kind and year the fund pays
    nothing (as when not covered), but the account still does."""
    total = sum(line.amount for line in lines)
    eligible = sum(line_eligible(line) for line in lines)
    if covered and policy is not None:
        deductible_applied = min(eligible, max(0, policy.deductible - used.deductible_used))
        fund = min(
            (eligible - deductible_applied) * policy.fund_ratio_bp // BP,
            max(0, policy.annual_cap - used.fund_used),
        )
    else:
        deductible_applied = 0
        fund = 0
    personal = total - fund
    account = min(personal, max(0, balance))
    if account_max is not None:
        account = min(account, account_max)
    return Split(
        total=total,
        eligible=eligible,
        deductible_applied=deductible_applied,
        fund=fund,
        account=account,
        cash=personal - account,
        covered=covered,
    )


def accumulate(used: Accumulators, split: Split) -> Accumulators:
    """The year's accumulators after an approved purchase with `split`."""
    return Accumulators(
        deductible_used=used.deductible_used + split.deductible_applied,
        fund_used=used.fund_used + split.fund,
    )


MAX_LINES = 100


def items_decline(
    amount: int, items: Sequence[tuple[str, int, int]], known_codes: Iterable[str], max_amount: int
) -> Code | None:
    """Declines of an itemised request decided on its lines alone, before any PIN: an
    amount that is zero, over the per-transaction limit or not the sum of the lines is 13;
    a code not in the catalogue is 12."""
    if amount <= 0 or amount > max_amount:
        return Code.INVALID_AMOUNT
    if amount != sum(quantity * unit_price for _, quantity, unit_price in items):
        return Code.INVALID_AMOUNT
    known = set(known_codes)
    if any(code not in known for code, _, _ in items):
        return Code.INVALID_TRANSACTION
    return None


@dataclass(frozen=True, slots=True)
class Settlement:
    code: Code
    split: Split | None  # present when approved
    balance: int  # the account's balance after
    pin_failures: int  # the card's PIN-failure count after (decide_after_pin)


def decide_settlement(
    *,
    txn_type: str,
    lines: Sequence[Line] | None,
    amount: int,
    covered: bool,
    policy: Policy | None,
    used: Accumulators,
    card_status: str,
    pin_failures: int,
    pin_try: int,
    account_status: str,
    balance: int,
    account_max: int | None,
    daily: DailyUse,
) -> Settlement:
    """The answer to an itemised purchase or settlement trial (or, with `lines` None, a
    plain purchase under daily limits) on the card, account and accumulators as they are
    (locked, for a purchase). The card's standing and the daily limits are the post-PIN
    decision of every purchase; then the split must have the fund or the account pay
    something (else 51). A trial moves nothing and has no limits. `pin_try` is the count
    this request's PIN try took the card to (0: no PIN was checked, nothing forgiven)."""
    standing: dict[str, Any] = {
        "card_status": card_status,
        "pin_failures": pin_failures,
        "pin_try": pin_try,
        "account_status": account_status,
        "balance": balance,
    }
    if lines is None:  # a plain purchase: the account pays it all, or nothing
        after = decide_after_pin(txn_type="purchase", amount=amount, daily=daily, **standing)
        return Settlement(after.code, None, after.balance, after.pin_failures)
    split = split_purchase(
        lines,
        covered=covered,
        policy=policy,
        used=used,
        balance=balance,
        account_max=account_max,
    )
    purchase = txn_type == "purchase"
    after = decide_after_pin(
        txn_type="purchase",
        amount=split.account,
        daily=daily if purchase else NO_LIMITS,
        spend=split.total,
        **standing,
    )
    if after.code != Code.APPROVED:
        return Settlement(after.code, None, balance, after.pin_failures)
    if not split.pays_something:
        return Settlement(Code.INSUFFICIENT_FUNDS, None, balance, after.pin_failures)
    return Settlement(
        Code.APPROVED, split, balance - split.account if purchase else balance, after.pin_failures
    )
