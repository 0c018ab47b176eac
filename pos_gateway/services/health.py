"""Is the database there? For /healthz, and for transports mapping its absence."""

from __future__ import annotations

import asyncio

import asyncpg

from pos_gateway.store.database import UNAVAILABLE_ERRORS

__all__ = ["UNAVAILABLE_ERRORS", "database_reachable"]


async def database_reachable(pool: asyncpg.Pool, timeout_s: float) -> bool:
    """True once the database answers a trivial query within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            await pool.fetchval("SELECT 1")
    except UNAVAILABLE_ERRORS:
        return False
    return True
