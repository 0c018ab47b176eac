"""Employers and employments: Social Insurance Law art. 58 and the employer's code.

An employer registers an employee within 30 days from the date of employment; a later
registration is accepted (the person must be insured) but flagged as late. Flexibly
employed people register themselves, and no deadline applies to them.

Employers are identified by the unified social credit code (GB 32100-2015): 18
characters over an alphabet without I, O, S, V, Z, the last a MOD 31 check character.
"""

from __future__ import annotations

import re
from datetime import date

REGISTRATION_DEADLINE_DAYS = 30
EMPLOYEE, FLEXIBLE = "employee", "flexible"

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
USCC_RE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}")


def days_to_register(hired_on: date, registered_on: date) -> int:
    return (registered_on - hired_on).days


def registration_late(kind: str, hired_on: date, registered_on: date) -> bool:
    """Day 30 after hiring is still in time; day 31 is late. Flexible work is never late."""
    return kind == EMPLOYEE and days_to_register(hired_on, registered_on) > (
        REGISTRATION_DEADLINE_DAYS
    )


def uscc_check_character(first17: str) -> str:
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def employer_id_valid(code: str) -> bool:
    return bool(USCC_RE.fullmatch(code)) and uscc_check_character(code[:17]) == code[17]


def make_employer_id(body17: str) -> str:
    """Complete 17 characters of the code alphabet with their check character."""
    return body17 + uscc_check_character(body17)


MIN_WORKING_AGE = 16  # Labour Law art. 15


def old_enough_to_work(birth_date: date, hired_on: date) -> bool:
    try:
        sixteenth = birth_date.replace(year=birth_date.year + MIN_WORKING_AGE)
    except ValueError:  # born on 29 February
        sixteenth = date(birth_date.year + MIN_WORKING_AGE, 3, 1)
    return hired_on >= sixteenth


def employment_covers(hired_on: date, ended_on: date | None, month: date) -> bool:
    """True when the employment lasts at least one day of `month` (a month start)."""
    hired_month = hired_on.replace(day=1)
    return hired_month <= month and (ended_on is None or ended_on.replace(day=1) >= month)
