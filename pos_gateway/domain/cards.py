"""Card numbers (ISO/IEC 7812 Luhn) and card-level rules."""

from __future__ import annotations

import re
from datetime import date

PAN_RE = re.compile(r"[0-9]{16,19}")


def luhn_check_digit(partial: str) -> str:
    """Return the Luhn check digit to append to `partial` (digits only)."""
    total = 0
    # Walking from the right, the digit next to the (future) check digit is doubled.
    for offset, char in enumerate(reversed(partial)):
        digit = int(char)
        if offset % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """True when `number` is all digits and its last digit is the right Luhn check digit."""
    if not number.isascii() or not number.isdigit() or len(number) < 2:
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def pan_well_formed(pan: str) -> bool:
    """16 to 19 ASCII digits, the shape a terminal must send (Luhn is a business check)."""
    return bool(PAN_RE.fullmatch(pan))


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits, the rest as '*' (PCI DSS display rule)."""
    if len(pan) < 11:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def card_expired(expires_on: date, today: date) -> bool:
    """A card is valid through its expiry day, inclusive."""
    return today > expires_on


def last_day_of_month(year: int, month: int) -> date:
    """Cards expire at the end of their expiry month (the YYMM printed on them)."""
    if month == 12:
        return date(year, 12, 31)
    return date.fromordinal(date(year, month + 1, 1).toordinal() - 1)
