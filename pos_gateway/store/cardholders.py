"""Cardholder credentials and sessions (rows, so every gateway process shares them)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from pos_gateway.store.lockout import count_attempt, not_locked, reserve_throttled_attempt

_CREDENTIAL_COLUMNS = "ssn, password_hash, must_change, failed_attempts, locked_until"


async def get_credentials(conn: asyncpg.Connection, ssn: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_CREDENTIAL_COLUMNS} FROM cardholder_credentials WHERE ssn = $1", ssn
    )


async def create_initial_credentials(
    conn: asyncpg.Connection, ssn: str, password_hash: str
) -> bool:
    """The first password, to be changed at first login; False (nothing changed) when the
    person has a password already."""
    result = await conn.execute(
        """
        INSERT INTO cardholder_credentials (ssn, password_hash, must_change) VALUES ($1, $2, true)
        ON CONFLICT (ssn) DO NOTHING
        """,
        ssn,
        password_hash,
    )
    return result != "INSERT 0 0"


async def reserve_attempt(
    conn: asyncpg.Connection, ssn: str, max_failures: int, lockout: timedelta
) -> asyncpg.Record | None:
    """Count an attempt as failed before its password is checked, and lock when it is the
    `max_failures`-th in a row; None while the login is locked. A successful check then
    clears the count (login_succeeded)."""
    return await conn.fetchrow(
        f"""
        UPDATE cardholder_credentials
        SET {count_attempt()}
        WHERE ssn = $1 AND {not_locked()}
        RETURNING {_CREDENTIAL_COLUMNS}
        """,
        ssn,
        max_failures,
        lockout,
    )


async def reserve_unknown_attempt(
    conn: asyncpg.Connection, ssn: str, max_failures: int, lockout: timedelta
) -> bool:
    """reserve_attempt for an ID number with no credentials (login_throttle): False while
    it is locked, so an unknown number locks after as many tries as a registered one."""
    return await reserve_throttled_attempt(conn, "login_throttle", ssn, max_failures, lockout)


async def login_succeeded(conn: asyncpg.Connection, ssn: str) -> None:
    await conn.execute(
        """
        UPDATE cardholder_credentials SET failed_attempts = 0, locked_until = NULL
        WHERE ssn = $1
        """,
        ssn,
    )


async def set_password(conn: asyncpg.Connection, ssn: str, password_hash: str) -> None:
    await conn.execute(
        """
        UPDATE cardholder_credentials
        SET password_hash = $2, must_change = false, failed_attempts = 0, locked_until = NULL,
            changed_at = now()
        WHERE ssn = $1
        """,
        ssn,
        password_hash,
    )


async def set_chosen_password(conn: asyncpg.Connection, ssn: str, password_hash: str) -> None:
    """A password that needs no change (as if the holder had chosen it), unlocked."""
    await _put_password(conn, ssn, password_hash, must_change=False)


async def reset_to_initial(conn: asyncpg.Connection, ssn: str, password_hash: str) -> None:
    """Counter reset: back to a first password, unlocked, to be changed at next login."""
    await _put_password(conn, ssn, password_hash, must_change=True)


async def _put_password(
    conn: asyncpg.Connection, ssn: str, password_hash: str, *, must_change: bool
) -> None:
    await conn.execute(
        """
        INSERT INTO cardholder_credentials (ssn, password_hash, must_change) VALUES ($1, $2, $3)
        ON CONFLICT (ssn) DO UPDATE
        SET password_hash = EXCLUDED.password_hash, must_change = EXCLUDED.must_change,
            failed_attempts = 0, locked_until = NULL, changed_at = now()
        """,
        ssn,
        password_hash,
        must_change,
    )


# Sessions ------------------------------------------------------------------------------


async def create_session(
    conn: asyncpg.Connection,
    token_hash: bytes,
    ssn: str,
    password_change_required: bool,
    idle: timedelta,
    remote_addr: str | None,
) -> None:
    # Expired and revoked sessions of the person go at each login: the table stays small.
    await conn.execute(
        """
        DELETE FROM cardholder_sessions
        WHERE ssn = $1 AND (expires_at <= now() OR revoked_at IS NOT NULL)
        """,
        ssn,
    )
    await conn.execute(
        """
        INSERT INTO cardholder_sessions (token_hash, ssn, password_change_required, expires_at,
                                         remote_addr)
        VALUES ($1, $2, $3, now() + $4::interval, $5)
        """,
        token_hash,
        ssn,
        password_change_required,
        idle,
        remote_addr,
    )


async def touch_session(
    conn: asyncpg.Connection | asyncpg.Pool,
    token_hash: bytes,
    idle: timedelta,
    max_age: timedelta,
) -> asyncpg.Record | None:
    """Validate and extend a session in one statement; None when unknown, revoked,
    idle too long or older than `max_age`."""
    return await conn.fetchrow(
        """
        UPDATE cardholder_sessions
        SET expires_at = LEAST(now() + $2::interval, created_at + $3::interval)
        WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
          AND created_at + $3::interval > now()
        RETURNING ssn, password_change_required
        """,
        token_hash,
        idle,
        max_age,
    )


async def revoke_session(conn: asyncpg.Connection, token_hash: bytes) -> bool:
    result = await conn.execute(
        """
        UPDATE cardholder_sessions SET revoked_at = now()
        WHERE token_hash = $1 AND revoked_at IS NULL
        """,
        token_hash,
    )
    return result != "UPDATE 0"


async def revoke_sessions_of(conn: asyncpg.Connection, ssn: str, keep: bytes | None = None) -> None:
    await conn.execute(
        """
        UPDATE cardholder_sessions SET revoked_at = now()
        WHERE ssn = $1 AND revoked_at IS NULL AND ($2::bytea IS NULL OR token_hash <> $2)
        """,
        ssn,
        keep,
    )


async def clear_password_change(conn: asyncpg.Connection, token_hash: bytes) -> None:
    await conn.execute(
        "UPDATE cardholder_sessions SET password_change_required = false WHERE token_hash = $1",
        token_hash,
    )
