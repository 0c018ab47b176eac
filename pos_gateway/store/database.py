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

# What "the database cannot be reached" looks like from asyncpg: answered 91/503, fast.
# Callers ask database_unavailable(exc): two of these kinds count only by their message.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable while connecting
    TimeoutError,  # connect or command timeout
    asyncpg.PostgresConnectionError,  # includes the connection lost mid-statement
    asyncpg.CannotConnectNowError,
    # Server full of connections (some left by a partition): unavailable, not broken.
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.QueryCanceledError,  # statement_timeout
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
# InterfaceError is also what a bug raises (wrong argument count, a released connection
# used again, one connection used by two tasks: "another operation is in progress"), and
# those stay 96/500 with a traceback. Only these messages are the connection's state after
# a cut or a cancelled statement still winding down (seen in the fault suite): the
# connection failed, not the request.
_CONNECTION_STATE_MESSAGES = (
    "connection is closed",
    "connection was closed",
    "pool is closing",
    "pool is closed",
    "cannot switch to state",  # InternalClientError: "...; another operation (2) is in progress"
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached now (91/503, not a bug)."""
    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)):
        return any(message in str(exc) for message in _CONNECTION_STATE_MESSAGES)
    return isinstance(exc, UNAVAILABLE_ERRORS)


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
    dsn: str
    if settings.database_url is not None:
        dsn = settings.database_url
    else:
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
