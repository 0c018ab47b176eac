"""Merchants and their designation."""

from __future__ import annotations

from datetime import date

import asyncpg

_COLUMNS = "merchant_id, name, kind, designated_from, designated_until, suspended"


async def insert(
    conn: asyncpg.Connection,
    merchant_id: str,
    name: str,
    kind: str,
    designated_from: date,
    designated_until: date,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""
        INSERT INTO merchants (merchant_id, name, kind, designated_from, designated_until)
        VALUES ($1, $2, $3, $4, $5)
        RETURNING {_COLUMNS}
        """,
        merchant_id,
        name,
        kind,
        designated_from,
        designated_until,
    )


async def get(conn: asyncpg.Connection, merchant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM merchants WHERE merchant_id = $1", merchant_id
    )


async def find_by_name(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM merchants WHERE name = $1 ORDER BY merchant_id LIMIT 1", name
    )


async def terminal_ids(conn: asyncpg.Connection, merchant_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT terminal_id FROM terminals WHERE merchant_id = $1 ORDER BY terminal_id",
        merchant_id,
    )
    return [r["terminal_id"] for r in rows]
