"""Faults under load, against real `pos-gateway serve` processes: after each, the money
is right by three readings, nothing is debited twice, a reversal that came first blocks
its original, batches close in balance, verify-ledger is clean and no answer was a 5xx.
Recovery times and latencies during each fault are printed (figures, not assertions).

Run with `make test-faults` (or `pytest -m faults -s`); `make test` leaves it out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ..dbproxy import DatabaseProxy
from ..gateway_process import (
    GatewayProcess,
    ServedWorld,
    fresh_secrets_env,
    gateway_env,
    postmaster_pid,
    private_dir,
    run_cli,
    wait_for,
)
from .driver import FaultTerminal, Ledger

pytestmark = pytest.mark.faults

TERMINALS = 6
CARDS = 4
OPENING_FEN = 1_000_000
CLIENT_TIMEOUT_S = 5.0  # the terminal's own timeout, above the gateway's 3 s deadline
WARMUP_S = 2.0
AFTER_RECOVERY_S = 1.0
RECOVERY_BOUND_S = 60.0  # bounded waits; the figures printed are what counts
PAUSE_S = 0.02

Inject = Callable[[], Awaitable[None]]


@pytest.fixture(scope="module")
def embedded_gateway() -> Iterator[GatewayProcess]:
    """One gateway on its own embedded PostgreSQL, restarted by the tests that kill it."""
    with private_dir("pos-faults-") as base:
        env = gateway_env(base / "data", **fresh_secrets_env())
        gateway = GatewayProcess(env, base / "gw.log")
        gateway.start()
        try:
            assert asyncio.run(gateway.wait_healthy()), gateway.log_tail()
            yield gateway
        finally:
            gateway.stop()
            pid = postmaster_pid(base / "data")
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                wait_for(lambda: postmaster_pid(base / "data") is None, timeout_s=30)


async def _run(name: str, gateway: GatewayProcess, cli_env: dict[str, str], inject: Inject) -> None:
    log_start = gateway.log_path.stat().st_size if gateway.log_path.exists() else 0
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        world = ServedWorld(session, gateway.url, gateway.env["POS_ADMIN_TOKEN"])
        merchant_id = await world.merchant()
        terminals = [await world.terminal(merchant_id) for _ in range(TERMINALS)]
        cards = [await world.card(OPENING_FEN) for _ in range(CARDS)]
        ledger = Ledger()
        drivers = [
            FaultTerminal(t, cards, ledger, seed=zlib.crc32(f"{name}/{i}".encode()))
            for i, t in enumerate(terminals)
        ]
        stop = asyncio.Event()
        give_up_at = time.monotonic() + 3 * RECOVERY_BOUND_S
        tasks = [asyncio.create_task(d.run(stop, give_up_at, PAUSE_S)) for d in drivers]
        try:
            await asyncio.sleep(WARMUP_S)
            fault_start = time.monotonic()
            await inject()
            fault_end = time.monotonic()
            recovered_at = None
            while time.monotonic() < fault_end + RECOVERY_BOUND_S:
                recovered_at = ledger.first_approval_after(fault_end)
                if recovered_at is not None:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(AFTER_RECOVERY_S)
        finally:
            stop.set()
            await asyncio.gather(*tasks)

        recovery_s = None if recovered_at is None else round(recovered_at - fault_end, 2)
        during = ledger.latencies(fault_start, recovered_at or time.monotonic())
        print(
            f"\nFAULT {name}: fault {fault_end - fault_start:.1f} s, recovery "
            f"{recovery_s} s after it ended; latencies during fault and recovery: "
            f"n={during['n']} p50={during['p50_ms']} ms p99={during['p99_ms']} ms "
            f"max={during['max_ms']} ms; approved {sum(len(v) for v in ledger.approved.values())}"
            f", reversal-first blocked {ledger.reversal_first_blocked}; answers during: "
            f"{ledger.outcomes(fault_start, recovered_at or time.monotonic())}"
        )
        print(f"gateway saw: {_failures_logged(gateway.log_path, log_start)}")
        assert recovery_s is not None, f"{name}: no approval within {RECOVERY_BOUND_S} s"
        await _check_after(name, world, terminals[0], drivers, cards, ledger, cli_env)


async def _check_after(
    name: str,
    world: ServedWorld,
    inquirer: Any,
    drivers: list[FaultTerminal],
    cards: list[dict[str, Any]],
    ledger: Ledger,
    cli_env: dict[str, str],
) -> None:
    assert ledger.server_errors == [], f"{name}: 5xx answers {ledger.server_errors[:3]}"
    # A database or network failure is 91 (issuer unavailable), never 96.
    assert not any(s.outcome == "96" for s in ledger.samples), f"{name}: a 96 was answered"
    assert ledger.unresolved == 0, f"{name}: reversals never answered"
    assert ledger.rrn_reused == [], f"{name}: one RRN for two requests"
    assert ledger.reversal_first_violations == [], f"{name}: original debited after reversal"
    for card in cards:
        expected = OPENING_FEN - ledger.spent(card["pan"])
        _, inquiry = await inquirer.transact("balance_inquiry", pan=card["pan"], pin=card["pin"])
        view = await world.admin("GET", f"/v1/admin/cards/{card['pan']}")
        entries = await _statement(world, card["account_id"])
        debits_per_rrn: dict[str, int] = {}
        for entry in entries:
            if entry["amount"] < 0 and entry.get("rrn"):
                debits_per_rrn[entry["rrn"]] = debits_per_rrn.get(entry["rrn"], 0) + 1
        readings = (inquiry.body.get("balance"), view["balance"], sum(e["amount"] for e in entries))
        assert readings == (expected, expected, expected), (name, card["pan"][-4:], readings)
        assert all(n == 1 for n in debits_per_rrn.values()), f"{name}: an RRN debited twice"
    for driver in drivers:
        batch_no = (await driver.terminal.open_batch()).body["batch_no"]
        _, closed = await driver.terminal.close_batch(
            batch_no, driver.batch, {"count": 0, "amount": 0}
        )
        assert closed.status == 200 and closed.body["in_balance"], (name, closed.body)
    verified = await asyncio.to_thread(run_cli, cli_env, "verify-ledger")
    assert verified.returncode == 0, f"{name}: {verified.stdout}{verified.stderr}"


def _failures_logged(log_path: Path, offset: int) -> dict[str, int]:
    """How the gateway classified what went wrong: event and exception name, counted."""
    counts: dict[str, int] = {}
    with log_path.open("rb") as log:
        log.seek(offset)
        for raw in log:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict) or line.get("level") not in ("warning", "error"):
                continue
            key = f"{line.get('event')}:{line.get('error', '')}".rstrip(":")
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


async def _statement(world: ServedWorld, account_id: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):  # bounded paging
        query = f"?limit=500&cursor={cursor}" if cursor else "?limit=500"
        page = await world.admin("GET", f"/v1/admin/accounts/{account_id}/statement{query}")
        entries.extend(page["entries"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    return entries


# -- faults on a gateway with its own embedded PostgreSQL ---------------------------------


async def test_kill_9_of_the_gateway_under_load_and_restart(
    embedded_gateway: GatewayProcess,
) -> None:
    async def inject() -> None:
        for _ in range(2):
            embedded_gateway.kill()
            embedded_gateway.start()  # same data directory, same port
            assert await embedded_gateway.wait_healthy(), embedded_gateway.log_tail()
            await asyncio.sleep(1.0)

    await _run("kill -9 gateway x2", embedded_gateway, embedded_gateway.env, inject)


async def test_sigstop_and_sigcont_of_the_gateway(embedded_gateway: GatewayProcess) -> None:
    async def inject() -> None:
        embedded_gateway.signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(6.0)
        finally:
            embedded_gateway.signal(signal.SIGCONT)

    await _run("SIGSTOP 6 s", embedded_gateway, embedded_gateway.env, inject)


async def test_embedded_postgres_crash_and_restart_by_serve(
    embedded_gateway: GatewayProcess,
) -> None:
    data_dir = Path(embedded_gateway.env["POS_DATA_DIR"])

    async def inject() -> None:
        pid = postmaster_pid(data_dir)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        for _ in range(600):  # bounded: serve restarts it by itself
            restarted = postmaster_pid(data_dir)
            if restarted is not None and restarted != pid:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("serve did not restart its database")

    await _run("embedded postgres SIGKILL", embedded_gateway, embedded_gateway.env, inject)


# -- faults between a gateway and its database (POS_DATABASE_URL through a TCP proxy) ----


async def _run_through_proxy(
    name: str, database_url: str, fault: Callable[[DatabaseProxy], Inject]
) -> None:
    with private_dir("pos-faults-") as base:
        await _run_through_proxy_in(name, database_url, base, fault)


async def _run_through_proxy_in(
    name: str, database_url: str, tmp_path: Path, fault: Callable[[DatabaseProxy], Inject]
) -> None:
    proxy = DatabaseProxy(database_url)
    await proxy.start()
    secrets_env = fresh_secrets_env()
    env = gateway_env(tmp_path / "data", POS_DATABASE_URL=proxy.dsn, **secrets_env)
    direct_env = gateway_env(tmp_path / "data", POS_DATABASE_URL=database_url, **secrets_env)
    gateway = GatewayProcess(env, tmp_path / "gw.log")
    gateway.start()
    try:
        assert await gateway.wait_healthy(), gateway.log_tail()
        await _run(name, gateway, direct_env, fault(proxy))
    finally:
        proxy.heal()
        gateway.stop()
        await proxy.cut()


def _crash(proxy: DatabaseProxy) -> Inject:
    async def inject() -> None:
        # A server crash as the gateway sees it: every connection dropped, none accepted
        # while it restarts.
        await proxy.cut()
        await asyncio.sleep(2.0)
        await proxy.start()

    return inject


def _outage(proxy: DatabaseProxy) -> Inject:
    async def inject() -> None:
        await proxy.cut()
        await asyncio.sleep(6.0)
        await proxy.start()

    return inject


def _random_cuts(proxy: DatabaseProxy) -> Inject:
    async def inject() -> None:
        proxy.cut_at_random(0.1, seed=10)
        await asyncio.sleep(5.0)
        proxy.cut_at_random(0.0, seed=0)
        print(f"\nconnection cuts: {proxy.cuts}")

    return inject


def _silent(proxy: DatabaseProxy) -> Inject:
    async def inject() -> None:
        proxy.go_silent()
        await asyncio.sleep(8.0)
        proxy.heal()

    return inject


@pytest.mark.parametrize(
    ("name", "fault"),
    [
        ("database crash (connections dropped)", _crash),
        ("outage 6 s, connections refused", _outage),
        ("random connection cuts before/after a statement", _random_cuts),
        ("silent partition 8 s", _silent),
    ],
)
async def test_database_fault_through_proxy(
    name: str, fault: Callable[[DatabaseProxy], Inject], database_url: str
) -> None:
    await _run_through_proxy(name, database_url, fault)
