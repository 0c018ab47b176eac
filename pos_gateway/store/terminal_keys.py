"""Re-keying a terminal. The terminal path unwraps the keys from the row on every
request, so the old keys stop working when this commits."""

from __future__ import annotations

import asyncpg


async def replace_keys(
    conn: asyncpg.Connection, terminal_id: str, mac_key_wrapped: bytes, pin_key_wrapped: bytes
) -> bool:
    result = await conn.execute(
        """
        UPDATE terminals SET mac_key_wrapped = $2, pin_key_wrapped = $3
        WHERE terminal_id = $1
        """,
        terminal_id,
        mac_key_wrapped,
        pin_key_wrapped,
    )
    return result != "UPDATE 0"
