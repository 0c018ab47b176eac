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


async def prune_throttle(conn: asyncpg.Connection, lockout_interval: timedelta) -> int:
    """Delete up to PRUNE_BATCH login_throttle rows whose last attempt is older than the
    interval (their lock, set at that attempt, has run out too); rows being counted right
    now are skipped, not waited for. Returns how many went."""
    result = await conn.execute(
        """
        DELETE FROM login_throttle WHERE ssn = ANY(ARRAY(
            SELECT ssn FROM login_throttle
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
