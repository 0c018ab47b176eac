"""Is the database there? For /healthz, and for transports mapping its absence (http/
does not import store/, so the classification reaches it from here)."""

from __future__ import annotations

import asyncpg

from pos_gateway.services.deadline import within_deadline
from pos_gateway.store.database import UNAVAILABLE_ERRORS, database_unavailable

__all__ = ["UNAVAILABLE_ERRORS", "database_reachable", "database_unavailable"]


async def database_reachable(pool: asyncpg.Pool, timeout_s: float) -> bool:
    """True once the database answers a trivial query within `timeout_s` (a task of its
    own: a silent database cannot hold the caller past it; see services/deadline.py)."""
    try:
        await within_deadline(pool.fetchval("SELECT 1"), timeout_s)
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        return False
    return True
