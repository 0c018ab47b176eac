"""The terminal's local date, sent without its year (ISO 8583 field 13, MMDD)."""

from __future__ import annotations

from datetime import date


def nearest_date(month: int, day: int, business_date: date) -> date | None:
    """The date with this month and day nearest to the business date (a terminal's clock
    is at most hours off, so Dec 31 sent on Jan 1 is last year's); None if no year has
    it (Feb 30; Feb 29 far from a leap year)."""
    candidates = []
    for year in (business_date.year - 1, business_date.year, business_date.year + 1):
        try:
            candidates.append(date(year, month, day))
        except ValueError:
            continue
    if not candidates:
        return None
    return min(candidates, key=lambda d: abs((d - business_date).days))
