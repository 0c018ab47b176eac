"""Calendar months, the unit of contributions, allocations and coverage.

A month is represented by the date of its first day, as in the `contributions` table.
"""

from __future__ import annotations

import re
from datetime import date

MONTH_RE = re.compile(r"[0-9]{4}-[0-9]{2}")


def month_of(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, delta: int) -> date:
    total = month.year * 12 + month.month - 1 + delta
    return date(total // 12, total % 12 + 1, 1)


def months_from_to(first: date, last: date) -> list[date]:
    """Every month from `first` through `last` (inclusive); empty when last < first."""
    months: list[date] = []
    current = month_of(first)
    while current <= last:
        months.append(current)
        current = add_months(current, 1)
    return months


def month_count(first: date, last: date) -> int:
    """Months from `first` through `last`, inclusive (0 when last < first)."""
    return max((last.year - first.year) * 12 + last.month - first.month + 1, 0)


def format_month(month: date) -> str:
    return f"{month:%Y-%m}"


def parse_month(text: str) -> date:
    """'2026-05' -> date(2026, 5, 1); ValueError otherwise."""
    if not MONTH_RE.fullmatch(text):
        raise ValueError("month must be YYYY-MM")
    return date(int(text[:4]), int(text[5:]), 1)
