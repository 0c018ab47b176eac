"""Citizen ID numbers (GB 11643-1999), which are also social security numbers.

Structure: 6-digit region code, 8-digit birth date YYYYMMDD, 3-digit sequence
(odd for men, even for women), and an ISO 7064 MOD 11-2 check character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK_CHARS = "10X98765432"
# Nobody alive holds a number with another birth year; far-future years would also
# overflow date arithmetic (age, months) downstream.
EARLIEST_BIRTH_YEAR, LATEST_BIRTH_YEAR = 1880, 2099


def check_character(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


@dataclass(frozen=True, slots=True)
class CitizenId:
    number: str
    birth_date: date
    sex: str  # "male" | "female"


class InvalidCitizenId(ValueError):
    """The text is not a valid 18-character citizen ID number."""


def parse_citizen_id(text: str) -> CitizenId:
    """Validate shape, birth date and check character; raise InvalidCitizenId otherwise."""
    number = text.strip().upper()
    if not _SHAPE.fullmatch(number):
        raise InvalidCitizenId("must be 17 digits followed by a digit or X")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as exc:
        raise InvalidCitizenId("birth date part is not a date") from exc
    if not EARLIEST_BIRTH_YEAR <= birth.year <= LATEST_BIRTH_YEAR:
        raise InvalidCitizenId("birth year out of range")
    if check_character(number[:17]) != number[17]:
        raise InvalidCitizenId("check character does not match")
    sex = "male" if int(number[16]) % 2 == 1 else "female"
    return CitizenId(number=number, birth_date=birth, sex=sex)


def is_valid_citizen_id(text: str) -> bool:
    try:
        parse_citizen_id(text)
    except InvalidCitizenId:
        return False
    return True


def make_citizen_id(region: str, birth: date, sequence: int) -> str:
    """Build a valid number (used for demo data and tests)."""
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)
