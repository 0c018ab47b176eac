"""`serve` keeps its embedded PostgreSQL: restarted after a crash, stopped when the last
live process using it exits, even after another one was killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from .gateway_process import (
    GatewayProcess,
    ServedWorld,
    fresh_secrets_env,
    gateway_env,
    postmaster_pid,
    private_dir,
    wait_for,
)


@pytest.fixture
def workdir() -> Iterator[Path]:
    with private_dir("pos-embedded-") as path:
        yield path
        # Whatever the test did, leave no server running behind it.
        pid = postmaster_pid(path / "data")
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: postmaster_pid(path / "data") is None, timeout_s=30)


@pytest.fixture
def data_dir(workdir: Path) -> Path:
    return workdir / "data"


@pytest.fixture
def env(data_dir: Path) -> dict[str, str]:
    return gateway_env(data_dir, **fresh_secrets_env())


def _handle_pids(data_dir: Path) -> list[int]:
    return json.loads((data_dir / "pg" / ".handle_pids.json").read_text())


@pytest.fixture
async def two_gateways(
    env: dict[str, str], workdir: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two `serve` processes sharing one embedded server (the first one starts it)."""
    first = GatewayProcess(env, workdir / "first.log")
    second = GatewayProcess(env, workdir / "second.log")
    first.start()
    try:
        assert await first.wait_healthy(), first.log_tail()
        second.start()
        assert await second.wait_healthy(), second.log_tail()
        yield first, second
    finally:
        first.kill()
        second.kill()


async def test_server_stops_when_the_last_live_gateway_exits_after_another_was_killed(
    data_dir: Path, two_gateways: tuple[GatewayProcess, GatewayProcess]
) -> None:
    first, second = two_gateways
    server_pid = postmaster_pid(data_dir)
    assert server_pid is not None

    first.kill()
    # The killed process left its pid behind: exactly the case that kept servers up.
    assert first.process is not None and first.process.pid in _handle_pids(data_dir)
    assert postmaster_pid(data_dir) == server_pid
    assert second.stop() == 0

    assert wait_for(lambda: postmaster_pid(data_dir) is None, timeout_s=60)
    assert _handle_pids(data_dir) == []


async def test_server_keeps_running_while_another_live_gateway_uses_it(
    data_dir: Path, two_gateways: tuple[GatewayProcess, GatewayProcess]
) -> None:
    first, second = two_gateways
    assert first.stop() == 0

    assert postmaster_pid(data_dir) is not None
    assert await second.wait_healthy(timeout_s=10)
    assert second.stop() == 0
    assert wait_for(lambda: postmaster_pid(data_dir) is None, timeout_s=60)


async def test_serve_restarts_its_database_after_a_crash(
    data_dir: Path, env: dict[str, str], workdir: Path
) -> None:
    gateway = GatewayProcess(env, workdir / "gateway.log")
    gateway.start()
    try:
        assert await gateway.wait_healthy(), gateway.log_tail()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            world = ServedWorld(session, gateway.url, env["POS_ADMIN_TOKEN"])
            terminal = await world.terminal()
            card = await world.card(balance=10_000)
            crashed = postmaster_pid(data_dir)
            assert crashed is not None

            os.kill(crashed, signal.SIGKILL)
            answers = []
            for _ in range(300):  # bounded: about a minute at most
                _, answer = await terminal.transact(
                    "purchase", pan=card["pan"], pin=card["pin"], amount=100
                )
                answers.append((answer.status, answer.response_code))
                if answer.response_code == "00":
                    break
                await asyncio.sleep(0.2)
            restarted = postmaster_pid(data_dir)
    finally:
        stopped = gateway.stop()
        assert stopped == 0, gateway.log_tail()

    # While the database is down the answer is 91 (the terminal reverses), never a 5xx or
    # a 96; then the gateway, with no other command run, serves again on a new server.
    assert answers[-1] == (200, "00"), answers
    assert {code for _, code in answers} <= {"00", "91"}, answers
    assert restarted is not None and restarted != crashed
    assert wait_for(lambda: postmaster_pid(data_dir) is None, timeout_s=60)
