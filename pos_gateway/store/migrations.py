"""Ordered SQL migrations from schema/ (NNN_name.sql), each applied once, in a transaction."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import asyncpg

# Any fixed number: serializes migrations of several processes starting at once.
_ADVISORY_LOCK = 7_310_455_001


class MigrationError(Exception):
    """A migration failed or an applied one was edited afterwards."""


def schema_dir() -> Path:
    override = os.environ.get("POS_SCHEMA_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "schema"


def migration_files(directory: Path | None = None) -> list[Path]:
    directory = directory or schema_dir()
    files = sorted(p for p in directory.glob("[0-9][0-9][0-9]_*.sql"))
    if not files:
        raise MigrationError(f"no migrations found in {directory}")
    return files


async def apply_migrations(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """Apply what is not yet applied; return the names applied now (empty when up to date)."""
    files = migration_files(directory)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     text PRIMARY KEY,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {r["version"]: r["checksum"] for r in rows}
        for path in files:
            sql = path.read_text(encoding="utf-8")
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if path.name in applied:
                if applied[path.name] != checksum:
                    raise MigrationError(
                        f"{path.name} was edited after it was applied; add a new migration instead"
                    )
                continue
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                        path.name,
                        checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{path.name}: {exc}") from exc
            applied_now.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK)
    return applied_now
