"""Terminals and the merchant standing needed to authorize their requests."""

from __future__ import annotations

import asyncpg

_LOAD_FOR_AUTH = """
SELECT t.terminal_id, t.merchant_id, t.status, t.mac_key_wrapped, t.pin_key_wrapped,
       m.designated_from, m.designated_until, m.suspended
FROM terminals t JOIN merchants m USING (merchant_id)
WHERE t.terminal_id = $1
"""


async def load_for_auth(pool: asyncpg.Pool, terminal_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(_LOAD_FOR_AUTH, terminal_id)


async def insert(
    conn: asyncpg.Connection,
    terminal_id: str,
    merchant_id: str,
    mac_key_wrapped: bytes,
    pin_key_wrapped: bytes,
) -> None:
    await conn.execute(
        """
        INSERT INTO terminals (terminal_id, merchant_id, mac_key_wrapped, pin_key_wrapped)
        VALUES ($1, $2, $3, $4)
        """,
        terminal_id,
        merchant_id,
        mac_key_wrapped,
        pin_key_wrapped,
    )


async def exists(conn: asyncpg.Connection, terminal_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM terminals WHERE terminal_id = $1", terminal_id))


async def set_status(conn: asyncpg.Connection, terminal_id: str, status: str) -> bool:
    result = await conn.execute(
        "UPDATE terminals SET status = $2 WHERE terminal_id = $1", terminal_id, status
    )
    return result != "UPDATE 0"


async def wrapped_keys(conn: asyncpg.Connection, terminal_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT merchant_id, mac_key_wrapped, pin_key_wrapped
        FROM terminals WHERE terminal_id = $1
        """,
        terminal_id,
    )


async def open_batch(pool: asyncpg.Pool, terminal_id: str) -> int:
    return await pool.fetchval(
        "SELECT current_batch FROM terminals WHERE terminal_id = $1", terminal_id
    )
