"""Coverage for pooled-fund reimbursement, and suspension of insurance.

The rule (seed document; DESIGN §5): reimbursement from the pooled fund is available in
month M when contributions were paid for M or for M-1, so an interruption ends coverage
from its second month on. A suspension declared from month S stops contributions from S
on: no contribution is accepted for a suspended month, and one that exists anyway (a
race, or data loaded from elsewhere) does not count. Coverage then follows the rule, so
the month S itself is still covered when S-1 was paid. The individual account balance is
not concerned by any of this: it stays usable at the POS whatever the coverage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from pos_gateway.domain.months import add_months, format_month, month_of


@dataclass(frozen=True, slots=True)
class Suspension:
    from_month: date
    resumed_from: date | None = None  # None: still suspended

    def covers(self, month: date) -> bool:
        return self.from_month <= month and (self.resumed_from is None or month < self.resumed_from)


def suspension_in_effect(month: date, suspensions: Iterable[Suspension]) -> Suspension | None:
    for suspension in suspensions:
        if suspension.covers(month):
            return suspension
    return None


def contribution_refused(month: date, suspensions: Iterable[Suspension]) -> Suspension | None:
    """The suspension that forbids recording a contribution for `month`, if any."""
    return suspension_in_effect(month, suspensions)


def counted_months(paid: Iterable[date], suspensions: Iterable[Suspension]) -> set[date]:
    """Months whose contribution counts for coverage: paid and not suspended."""
    suspensions = tuple(suspensions)
    return {m for m in paid if suspension_in_effect(m, suspensions) is None}


class Reason:
    PAID_FOR_MONTH = "contribution_paid_for_month"
    PAID_FOR_PREVIOUS_MONTH = "contribution_paid_for_previous_month"
    SUSPENDED = "insurance_suspended"
    INTERRUPTED = "contributions_interrupted"
    NEVER_PAID = "no_contributions"


@dataclass(frozen=True, slots=True)
class Coverage:
    day: date
    month: date
    covered: bool
    reason: str
    paid_for_month: bool
    paid_for_previous_month: bool
    last_paid_month: date | None
    suspended_from: date | None

    def explanation(self) -> str:
        this, previous = format_month(self.month), format_month(add_months(self.month, -1))
        if self.reason == Reason.PAID_FOR_MONTH:
            text = f"contributions paid for {this}"
        elif self.reason == Reason.PAID_FOR_PREVIOUS_MONTH:
            text = (
                f"no contribution for {this}, but {previous} was paid: the first month of an "
                "interruption is still covered"
            )
        else:
            text = f"no contribution paid for {this} or {previous}"
            if self.last_paid_month is not None:
                text += f" (last paid: {format_month(self.last_paid_month)})"
            else:
                text += " (none ever paid)"
        if self.suspended_from is not None:
            text += f"; insurance suspended from {format_month(self.suspended_from)}"
        return text


def coverage_on(
    day: date, paid_months: Iterable[date], suspensions: Iterable[Suspension] = ()
) -> Coverage:
    """Covered on `day` iff a counted contribution exists for its month or the month before."""
    suspensions = tuple(suspensions)
    month = month_of(day)
    previous = add_months(month, -1)
    counted = counted_months(paid_months, suspensions)
    paid_this, paid_previous = month in counted, previous in counted
    up_to_now = [m for m in counted if m <= month]
    last_paid = max(up_to_now) if up_to_now else None
    suspension = suspension_in_effect(month, suspensions)
    if paid_this:
        reason = Reason.PAID_FOR_MONTH
    elif paid_previous:
        reason = Reason.PAID_FOR_PREVIOUS_MONTH
    elif suspension is not None:
        reason = Reason.SUSPENDED
    elif last_paid is None:
        reason = Reason.NEVER_PAID
    else:
        reason = Reason.INTERRUPTED
    return Coverage(
        day=day,
        month=month,
        covered=paid_this or paid_previous,
        reason=reason,
        paid_for_month=paid_this,
        paid_for_previous_month=paid_previous,
        last_paid_month=last_paid,
        suspended_from=suspension.from_month if suspension is not None else None,
    )


def earliest_suspension_month(current_month: date, last_paid_month: date | None) -> date:
    """A suspension starts no earlier than the current month, and after the last month
    already paid (a paid month cannot be un-paid by declaring it suspended)."""
    if last_paid_month is None or last_paid_month < current_month:
        return current_month
    return add_months(last_paid_month, 1)
