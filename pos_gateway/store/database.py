"""Connecting: the embedded server or POS_DATABASE_URL, migrations, and the pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from pos_gateway.settings import Settings
from pos_gateway.store.embedded import (
    ensure_database,
    start_embedded,
    stop_embedded,
    supervise_embedded,
)
from pos_gateway.store.migrations import apply_migrations

# What "the database cannot be reached" looks like from asyncpg: answered 91, fast.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.QueryCanceledError,
    # Server full of connections (some left by a partition): unavailable, not broken.
    asyncpg.TooManyConnectionsError,
    # A connection used again while a timed-out or cancelled statement still winds down
    # ("cannot switch to state ...; another operation is in progress"), as in a
    # partition: it is the connection that failed, not the request (91, not 96).
    asyncpg.exceptions.InternalClientError,
)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset query (RESET ALL, UNLISTEN, ...): our
    statements never change session state, and that query was one extra round trip for
    every statement run through the pool."""


@dataclass(frozen=True, slots=True)
class Database:
    pool: asyncpg.Pool
    dsn: str


@asynccontextmanager
async def open_database(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Database]:
    """Start (or join) the embedded server when no URL is set, migrate, open a pool."""
    server = None
    dsn = settings.database_url
    if dsn is None:
        server, dsn = await asyncio.to_thread(start_embedded, settings.data_dir)
        await ensure_database(server.get_uri(database="postgres"))
    try:
        if migrate:
            conn = await asyncpg.connect(dsn, timeout=settings.db_connect_timeout_s)
            try:
                await apply_migrations(conn)
            finally:
                await conn.close()
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=settings.db_pool_max,
            timeout=settings.db_connect_timeout_s,
            command_timeout=settings.db_command_timeout_s,
            server_settings={"application_name": "pos-gateway"},
            reset=_keep_session,
        )
        # The embedded server is ours to keep up: restarted after a crash while we run.
        supervisor = asyncio.create_task(supervise_embedded(server)) if server is not None else None
        try:
            yield Database(pool=pool, dsn=dsn)
        finally:
            if supervisor is not None:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
            await pool.close()
    finally:
        if server is not None:
            await asyncio.to_thread(stop_embedded, server)
