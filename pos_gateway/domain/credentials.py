"""Cardholder self-service credentials: the login password and the choice of a new PIN.

First password (seed: "password is your social security card number ..."): the last six
digits of the cardholder's card number (the active card issued last). It is printed on
the card the holder has in hand, so it is no secret from anyone who holds the card, and
it must therefore be changed at the first login before anything else is allowed.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

INITIAL_PASSWORD_DIGITS = 6
MAX_LOGIN_FAILURES = 5
LOCKOUT = timedelta(minutes=30)
SESSION_IDLE = timedelta(minutes=30)
SESSION_MAX = timedelta(hours=8)
PASSWORD_MIN, PASSWORD_MAX = 8, 64


def initial_password(pan: str) -> str:
    return pan[-INITIAL_PASSWORD_DIGITS:]


def password_problem(
    password: str, *, ssn: str, birth_date: date, initial: str | None = None
) -> str | None:
    """Why `password` may not be chosen, or None. Printable ASCII only: it is typed on
    counter keyboards and web forms alike, and hashed as bytes."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"
    if not all(" " <= c <= "~" for c in password):
        return "password must be printable ASCII characters"
    if not any(c.isdigit() for c in password) or not any(c.isalpha() for c in password):
        return "password must contain letters and digits"
    if initial is not None and initial in password:
        return "password must not contain the first password (the card number's last digits)"
    if ssn[:17] in password.upper() or ssn[-6:] in password.upper():
        return "password must not contain the ID number"
    if f"{birth_date:%Y%m%d}" in password:
        return "password must not contain the birth date"
    return None


def _is_run(pin: str) -> bool:
    """Each digit one more (or one less) than the one before, wrapping 9 -> 0."""
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    return steps in ({1}, {9})


def _is_short_pattern(pin: str) -> bool:
    """A pattern of 1 to 3 digits repeated: 000000, 121212, 123123."""
    return any(
        len(pin) % size == 0 and pin == pin[:size] * (len(pin) // size) for size in (1, 2, 3)
    )


def birth_date_forms(birth_date: date) -> set[str]:
    d = birth_date
    return {
        f"{d:%Y%m%d}",
        f"{d:%y%m%d}",
        f"{d:%d%m%y}",
        f"{d:%m%d%y}",
        f"{d:%d%m%Y}",
        f"{d:%m%d%Y}",
        f"{d:%Y%m}",
        f"{d:%m%Y}",
        f"{d:%Y}",
        f"{d:%m%d}",
        f"{d:%d%m}",
    }


def weak_pin_reason(pin: str, *, birth_date: date, ssn: str, pan: str) -> str | None:
    """Why a cardholder may not choose `pin` (the first guesses of whoever holds a lost
    card and the holder's ID card), or None."""
    if len(set(pin)) == 1:
        return "PIN must not be one digit repeated"
    if _is_run(pin):
        return "PIN must not be an ascending or descending run of digits"
    if _is_short_pattern(pin):
        return "PIN must not repeat a short pattern"
    if pin in birth_date_forms(birth_date):
        return "PIN must not be the birth date or a part of it"
    if pin in (ssn[-len(pin) :], pan[-len(pin) :]):
        return "PIN must not be the last digits of the ID number or the card number"
    return None
