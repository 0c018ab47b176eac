"""Changes to a merchant's designation: renewal of its period, suspension, reinstatement.
(The terminal path reads the designation per request, so a change applies at once.)"""

from __future__ import annotations

from datetime import date

import asyncpg

_COLUMNS = "merchant_id, name, kind, designated_from, designated_until, suspended"


async def set_period(
    conn: asyncpg.Connection, merchant_id: str, designated_from: date, designated_until: date
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        UPDATE merchants SET designated_from = $2, designated_until = $3
        WHERE merchant_id = $1
        RETURNING {_COLUMNS}
        """,
        merchant_id,
        designated_from,
        designated_until,
    )


async def set_suspended(
    conn: asyncpg.Connection, merchant_id: str, suspended: bool
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"UPDATE merchants SET suspended = $2 WHERE merchant_id = $1 RETURNING {_COLUMNS}",
        merchant_id,
        suspended,
    )
