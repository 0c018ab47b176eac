"""Contributions: the monthly allocation to individual accounts and payment notices.

Allocation rule (the 1998 urban-employee scheme, State Council Decision No. 44): the
whole individual part goes to the individual account, and a share of the employer part
(EMPLOYER_SHARE_PERCENT, about 30 %) goes with it; the rest of the employer part stays
in the pooled fund. Amounts are integer fen; the share is rounded down, so a fen that
cannot be split stays in the pooled fund and the account is never credited more than
was paid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from pos_gateway.domain.coverage import Suspension, suspension_in_effect

EMPLOYER_SHARE_PERCENT = 30


def allocation_amount(employer_part: int, individual_part: int) -> int:
    """What one month's contribution credits to the individual account, in fen."""
    if employer_part < 0 or individual_part < 0:
        raise ValueError("contribution parts are never negative")
    return individual_part + employer_part * EMPLOYER_SHARE_PERCENT // 100


def allocation_reference(month: date) -> str:
    """The journal reference of an allocation line: one per account and month."""
    return f"allocation {month:%Y-%m}"


class MonthStatus:
    PAID = "paid"
    MISSING = "missing"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class NoticeLine:
    month: date
    status: str
    employer_part: int
    individual_part: int


def notice_lines(
    months: Iterable[date],
    paid: Mapping[date, tuple[int, int]],
    suspensions: Iterable[Suspension] = (),
) -> list[NoticeLine]:
    """For each month: paid (with the parts), suspended (nothing due), or missing."""
    suspensions = tuple(suspensions)
    lines = []
    for month in months:
        if month in paid:
            employer_part, individual_part = paid[month]
            lines.append(NoticeLine(month, MonthStatus.PAID, employer_part, individual_part))
        elif suspension_in_effect(month, suspensions) is not None:
            lines.append(NoticeLine(month, MonthStatus.SUSPENDED, 0, 0))
        else:
            lines.append(NoticeLine(month, MonthStatus.MISSING, 0, 0))
    return lines
