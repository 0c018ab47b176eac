"""The login lockout counter in SQL, one rule for the operators' and the cardholders'
logins (and for ID numbers with no credentials): the query text composes these constant
fragments; the values stay $2 (max failures) and $3 (lockout interval).

The interval is both the lock's length and the failures' window: a run of failures ends
when a lock has run out or when no attempt came for a whole interval, and the next attempt
starts a fresh count. A row in that state therefore says nothing that a missing row does
not, which is what lets login_throttle be pruned (prune_throttle) without changing any
answer."""

from __future__ import annotations

from datetime import timedelta

import asyncpg


def _run_over(t: str) -> str:
    """The stored run of failures is over: its lock ran out, or its last attempt is older
    than the interval (a NULL time, from before the window was kept, counts on)."""
    return f"({t}locked_until IS NOT NULL OR {t}last_attempt_at <= now() - $3::interval)"


def count_attempt(table: str = "") -> str:
    """SET clause: the attempt counted as failed before its password is checked, and the
    lock from the `max_failures`-th in a row. A lock that has run out starts a fresh count:
    one wrong guess after it must not lock the holder out again for the whole period.
    `table`: the alias to qualify the old values with (in an upsert)."""
    t = f"{table}." if table else ""
    return f"""failed_attempts = CASE WHEN {_run_over(t)} THEN 1
                                   ELSE LEAST({t}failed_attempts + 1, 1000) END,
            locked_until = CASE WHEN NOT {_run_over(t)} AND {t}failed_attempts + 1 >= $2
                                THEN now() + $3::interval END,
            last_attempt_at = now()"""


def not_locked(table: str = "") -> str:
    """WHERE condition: no lock, or one that has run out."""
    t = f"{table}." if table else ""
    return f"({t}locked_until IS NULL OR {t}locked_until <= now())"


# Per login of an unknown ID number, which adds at most one row: a few more than one, so
# rows whose run is over cannot pile up, and little enough to stay cheap (index scan).
PRUNE_BATCH = 8


# The tables of logins without an account, and their key column: constants, never input.
_THROTTLES = {"login_throttle": "ssn", "operator_login_throttle": "username"}


async def prune_throttle(
    conn: asyncpg.Connection, lockout_interval: timedelta, table: str = "login_throttle"
) -> int:
    """Delete up to PRUNE_BATCH rows of `table` (login_throttle, operator_login_throttle)
    whose last attempt is older than the interval (their lock, set at that attempt, has
    run out too); rows being counted right now are skipped, not waited for. Returns how
    many went."""
    key = _THROTTLES[table]
    result = await conn.execute(
        f"""
        DELETE FROM {table} WHERE {key} = ANY(ARRAY(
            SELECT {key} FROM {table}
            WHERE last_attempt_at <= now() - $1::interval
            ORDER BY last_attempt_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ))
        """,
        lockout_interval,
        PRUNE_BATCH,
    )
    return int(result.split()[-1])


async def reserve_throttled_attempt(
    conn: asyncpg.Connection, table: str, key: str, max_failures: int, lockout: timedelta
) -> bool:
    """An attempt at a login that has no account (an ID number without credentials, an
    operator name without an enabled account), counted and locked like one that has:
    False while it is locked. The table grows only here, so rows whose run of failures is
    over are pruned here too."""
    column = _THROTTLES[table]
    await prune_throttle(conn, lockout, table)
    row = await conn.fetchrow(
        f"""
        INSERT INTO {table} AS t ({column}, failed_attempts, locked_until)
        VALUES ($1, 1, CASE WHEN 1 >= $2 THEN now() + $3::interval END)
        ON CONFLICT ({column}) DO UPDATE
        SET {count_attempt("t")}
        WHERE {not_locked("t")}
        RETURNING failed_attempts
        """,
        key,
        max_failures,
        lockout,
    )
    return row is not None
