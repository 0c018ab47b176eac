"""The login lockout counter in SQL, one rule for the operators' and the cardholders'
logins (and for ID numbers with no credentials): the query text composes these constant
fragments; the values stay $2 (max failures) and $3 (lockout interval)."""

from __future__ import annotations


def count_attempt(table: str = "") -> str:
    """SET clause: the attempt counted as failed before its password is checked, and the
    lock from the `max_failures`-th in a row. A lock that has run out starts a fresh count:
    one wrong guess after it must not lock the holder out again for the whole period.
    `table`: the alias to qualify the old values with (in an upsert)."""
    t = f"{table}." if table else ""
    return f"""failed_attempts = CASE WHEN {t}locked_until IS NOT NULL THEN 1
                                   ELSE LEAST({t}failed_attempts + 1, 1000) END,
            locked_until = CASE WHEN {t}locked_until IS NULL AND {t}failed_attempts + 1 >= $2
                                THEN now() + $3::interval END"""


def not_locked(table: str = "") -> str:
    """WHERE condition: no lock, or one that has run out."""
    t = f"{table}." if table else ""
    return f"({t}locked_until IS NULL OR {t}locked_until <= now())"
