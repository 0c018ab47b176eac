"""Operator accounts, roles and sessions (rows, so every gateway process shares them)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from pos_gateway.domain.operators import USERNAME_RE
from pos_gateway.store.lockout import count_attempt, not_locked, reserve_throttled_attempt

_COLUMNS = "username, password_hash, must_change, disabled, failed_attempts, locked_until"


async def insert(
    conn: asyncpg.Connection, username: str, password_hash: str, roles: list[str]
) -> bool:
    """False when the username is taken."""
    created = await conn.fetchval(
        """
        INSERT INTO operators (username, password_hash) VALUES ($1, $2)
        ON CONFLICT (username) DO NOTHING RETURNING true
        """,
        username,
        password_hash,
    )
    if created:
        await set_roles(conn, username, roles)
    return bool(created)


async def set_roles(conn: asyncpg.Connection, username: str, roles: list[str]) -> None:
    await conn.execute("DELETE FROM operator_roles WHERE username = $1", username)
    await conn.execute(
        """
        INSERT INTO operator_roles (username, role) SELECT $1, unnest($2::text[])
        ON CONFLICT DO NOTHING
        """,
        username,
        roles,
    )


async def get(conn: asyncpg.Connection, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        SELECT {_COLUMNS},
               ARRAY(SELECT role FROM operator_roles r WHERE r.username = o.username
                     ORDER BY role) AS roles
        FROM operators o WHERE username = $1
        """,
        username,
    )


async def list_all(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT username, must_change, disabled, locked_until, created_at,
               ARRAY(SELECT role FROM operator_roles r WHERE r.username = o.username
                     ORDER BY role) AS roles
        FROM operators o ORDER BY username
        """
    )


async def reserve_attempt(
    conn: asyncpg.Connection, username: str, max_failures: int, lockout: timedelta
) -> asyncpg.Record | None:
    """As for cardholders: counted as failed before the hash is checked; None while locked
    or disabled."""
    return await conn.fetchrow(
        f"""
        UPDATE operators
        SET {count_attempt()}
        WHERE username = $1 AND NOT disabled AND {not_locked()}
        RETURNING {_COLUMNS}
        """,
        username,
        max_failures,
        lockout,
    )


async def reserve_unknown_attempt(
    conn: asyncpg.Connection, username: str, max_failures: int, lockout: timedelta
) -> bool:
    """reserve_attempt for a name with no enabled account (operator_login_throttle):
    False while it is locked, so such a name locks after as many tries as a real one. A
    name that no account could have is not counted (nothing to hide about it)."""
    if not USERNAME_RE.fullmatch(username):
        return True
    return await reserve_throttled_attempt(
        conn, "operator_login_throttle", username, max_failures, lockout
    )


async def login_succeeded(conn: asyncpg.Connection, username: str) -> None:
    await conn.execute(
        "UPDATE operators SET failed_attempts = 0, locked_until = NULL WHERE username = $1",
        username,
    )


async def set_password(
    conn: asyncpg.Connection, username: str, password_hash: str, *, must_change: bool
) -> bool:
    result = await conn.execute(
        """
        UPDATE operators SET password_hash = $2, must_change = $3, failed_attempts = 0,
                             locked_until = NULL, changed_at = now()
        WHERE username = $1
        """,
        username,
        password_hash,
        must_change,
    )
    return result != "UPDATE 0"


async def set_disabled(conn: asyncpg.Connection, username: str, disabled: bool) -> bool:
    result = await conn.execute(
        "UPDATE operators SET disabled = $2 WHERE username = $1", username, disabled
    )
    return result != "UPDATE 0"


async def create_session(
    conn: asyncpg.Connection,
    token_hash: bytes,
    username: str,
    idle: timedelta,
    remote_addr: str | None,
) -> None:
    await conn.execute(
        """
        DELETE FROM operator_sessions
        WHERE username = $1 AND (expires_at <= now() OR revoked_at IS NOT NULL)
        """,
        username,
    )
    await conn.execute(
        """
        INSERT INTO operator_sessions (token_hash, username, expires_at, remote_addr)
        VALUES ($1, $2, now() + $3::interval, $4)
        """,
        token_hash,
        username,
        idle,
        remote_addr,
    )


async def touch_session(
    pool: asyncpg.Pool, token_hash: bytes, idle: timedelta, max_age: timedelta
) -> asyncpg.Record | None:
    """Validate and extend in one statement; the account must still be enabled. Roles are
    read at every request, so a role taken away applies at once."""
    return await pool.fetchrow(
        """
        WITH s AS (
            UPDATE operator_sessions
            SET expires_at = LEAST(now() + $2::interval, created_at + $3::interval)
            WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
              AND created_at + $3::interval > now()
            RETURNING username
        )
        SELECT o.username, o.must_change,
               ARRAY(SELECT role FROM operator_roles r WHERE r.username = o.username
                     ORDER BY role) AS roles
        FROM s JOIN operators o USING (username) WHERE NOT o.disabled
        """,
        token_hash,
        idle,
        max_age,
    )


async def revoke_session(conn: asyncpg.Connection, token_hash: bytes) -> None:
    await conn.execute(
        "UPDATE operator_sessions SET revoked_at = now() WHERE token_hash = $1 "
        "AND revoked_at IS NULL",
        token_hash,
    )


async def revoke_sessions_of(conn: asyncpg.Connection, username: str) -> None:
    await conn.execute(
        "UPDATE operator_sessions SET revoked_at = now() WHERE username = $1 "
        "AND revoked_at IS NULL",
        username,
    )
