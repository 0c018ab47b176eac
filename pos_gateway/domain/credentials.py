"""Cardholder self-service credentials: the login password and the choice of a new PIN.

First password: drawn at random when the first card is issued or when a counter resets
the password, shown once (on the card letter or the counter's screen), never derivable
from the card number (DESIGN §11), and to be changed at the first login before anything
else is allowed.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import date, timedelta

# No 0/o, 1/l/i: read off a letter or a screen and typed by hand.
_DRAWN_LETTERS = "abcdefghjkmnpqrstuvwxyz"
_DRAWN_DIGITS = "23456789"
MAX_LOGIN_FAILURES = 5
# How long a lock lasts, and the window of a run of failures: with no attempt for this
# long, the next one starts a new count (store/lockout.py).
LOCKOUT = timedelta(minutes=30)
SESSION_IDLE = timedelta(minutes=30)
SESSION_MAX = timedelta(hours=8)
PASSWORD_MIN, PASSWORD_MAX = 8, 64


def failed_login_detail(failures: int) -> dict[str, int | bool]:
    """What the audit says of a wrong password (at login or at a password change): the
    wrong ones in a row, and whether this one locked the login."""
    return {"consecutive_failures": failures, "locked": failures >= MAX_LOGIN_FAILURES}


def draw_first_password() -> str:
    """Ten random characters in two groups (about 50 bits), letters and digits both
    present, e.g. 'k7mqa-4x9pr'."""
    alphabet = _DRAWN_LETTERS + _DRAWN_DIGITS
    while True:
        chars = "".join(secrets.choice(alphabet) for _ in range(10))
        if any(c.isdigit() for c in chars) and any(c.isalpha() for c in chars):
            return f"{chars[:5]}-{chars[5:]}"


def password_problem(password: str, *, ssn: str, birth_date: date) -> str | None:
    """Why `password` may not be chosen, or None. Printable ASCII only: it is typed on
    counter keyboards and web forms alike, and hashed as bytes."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"
    if not all(" " <= c <= "~" for c in password):
        return "password must be printable ASCII characters"
    if not any(c.isdigit() for c in password) or not any(c.isalpha() for c in password):
        return "password must contain letters and digits"
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
