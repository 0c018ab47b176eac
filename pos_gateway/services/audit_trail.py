"""Reading the audit trail, newest first, with the same keyset cursor as statements."""

from __future__ import annotations

import json

import asyncpg

from pos_gateway.domain.cards import mask_pan
from pos_gateway.services.reports import StatementPage, check_limit, cut_page, decode_cursor
from pos_gateway.store import audit

MAX_PAGE = 1000


async def audit_trail_page(
    pool: asyncpg.Pool,
    *,
    subject_kind: str | None,
    subject_id: str | None,
    action: str | None,
    cursor: str | None,
    limit: int,
) -> StatementPage:
    check_limit(limit, MAX_PAGE)
    rows = await audit.entries(
        pool,
        subject_kind=subject_kind,
        subject_id=subject_id,
        action=action,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    rows, next_cursor = cut_page(rows, limit, "audit_id")
    entries = [
        {
            "audit_id": r["audit_id"],
            "time": r["occurred_at"].isoformat(),
            "actor_kind": r["actor_kind"],
            "actor_id": r["actor_id"],
            "remote_addr": r["remote_addr"],
            "request_id": r["request_id"],
            "action": r["action"],
            "subject_kind": r["subject_kind"],
            # A card's subject is its number: shown masked (the filter takes it whole).
            "subject_id": mask_pan(r["subject_id"])
            if r["subject_kind"] == "card"
            else r["subject_id"],
            "details": json.loads(r["details"]),
        }
        for r in rows
    ]
    return StatementPage(entries, next_cursor)
