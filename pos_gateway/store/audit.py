"""The audit trail: one row per state-changing operator or cardholder action, written in
the same database transaction as the change it records."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from pos_gateway.domain.audit import Actor
from pos_gateway.logs import SECRET_KEYS

# Beyond what logs drop: names a careless call site might use for a secret.
_REFUSED_DETAILS = SECRET_KEYS | {
    "old_password",
    "new_password",
    "password_hash",
    "token_hash",
    "keys",
}


class SecretInAudit(ValueError):
    """A detail field is named like a secret: such a value never goes into the audit."""


def _checked(details: dict[str, Any]) -> str:
    for key in details:
        if key.lower() in _REFUSED_DETAILS:
            raise SecretInAudit(f"audit detail {key!r} looks like a secret")
    return json.dumps(details, default=str, sort_keys=True)


async def record(
    conn: asyncpg.Connection,
    actor: Actor,
    action: str,
    subject_kind: str,
    subject_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO audit_log (actor_kind, actor_id, remote_addr, request_id, action,
                               subject_kind, subject_id, details)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
        """,
        actor.kind,
        actor.actor_id[:64],
        actor.remote_addr[:100] if actor.remote_addr else None,
        actor.request_id,
        action,
        subject_kind,
        subject_id,
        _checked(details or {}),
    )


async def entries(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    subject_kind: str | None,
    subject_id: str | None,
    action: str | None,
    before: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset on audit_id."""
    return await conn.fetch(
        """
        SELECT audit_id, occurred_at, actor_kind, actor_id, remote_addr, request_id, action,
               subject_kind, subject_id, details
        FROM audit_log
        WHERE ($1::text IS NULL OR subject_kind = $1)
          AND ($2::text IS NULL OR subject_id = $2)
          AND ($3::text IS NULL OR action = $3)
          AND ($4::bigint IS NULL OR audit_id < $4)
        ORDER BY audit_id DESC
        LIMIT $5
        """,
        subject_kind,
        subject_id,
        action,
        before,
        limit,
    )
