"""Operator accounts of the office pages: names, roles, and which role an action needs."""

from __future__ import annotations

import re

COUNTER, OFFICER, ADMIN = "counter", "officer", "admin"
ROLES = (COUNTER, OFFICER, ADMIN)
USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")


def username_problem(username: str) -> str | None:
    if not USERNAME_RE.fullmatch(username):
        return "username must be 2-32 characters: a-z, 0-9 and . _ - (not first)"
    return None


def roles_problem(roles: list[str] | tuple[str, ...]) -> str | None:
    if not roles:
        return "an account needs at least one role"
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        return f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}"
    return None


def operator_password_problem(password: str) -> str | None:
    """Operators' own passwords: 10 to 64 printable ASCII characters, letters and digits."""
    if not 10 <= len(password) <= 64:
        return "password must be 10 to 64 characters"
    if not all(" " <= c <= "~" for c in password):
        return "password must be printable ASCII characters"
    if not any(c.isdigit() for c in password) or not any(c.isalpha() for c in password):
        return "password must contain letters and digits"
    return None
