"""Fixtures on a real PostgreSQL: the embedded server by default, or the server at
POS_TEST_DATABASE_URL. Each test session gets a fresh database, migrated once; tests
create their own merchants, terminals and cards with random ids, so they commit freely
(concurrency tests need real commits) without seeing each other's data."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pos_gateway.app import create_app
from pos_gateway.logs import configure_logging
from pos_gateway.security.pins import Argon2Params
from pos_gateway.settings import Secrets, Settings
from pos_gateway.store.embedded import start_embedded, stop_embedded
from pos_gateway.store.migrations import apply_migrations
from terminal_sim.client import Terminal, TerminalConfig
from terminal_sim.protocol import StanCounter

from .dbproxy import DatabaseProxy
from .helpers import new_ssn, run_demo_data

# Cheap PIN hashing for tests; production parameters are exercised by the benchmark.
TEST_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=64, parallelism=1)


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    server = None
    admin_dsn = os.environ.get("POS_TEST_DATABASE_URL")
    if not admin_dsn:
        # Not under pytest's numbered tmp dirs: another pytest run of the same user rotates
        # those away, with this server's data inside, while the session still runs.
        embedded_dir = Path(tempfile.mkdtemp(prefix="pos-test-embedded-"))
        server, _ = start_embedded(embedded_dir)
        admin_dsn = server.get_uri(database="postgres")
    name = f"pos_test_{secrets.token_hex(5)}"
    dsn = _with_database(admin_dsn, name)

    async def create() -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(dsn)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    try:
        yield dsn
    finally:
        asyncio.run(drop())
        if server is not None:
            stop_embedded(server)
            shutil.rmtree(embedded_dir, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def json_logs() -> None:
    """Logs as in production: JSON on stderr through the redaction processor."""
    configure_logging("info")


@pytest.fixture(scope="session")
def gateway_secrets() -> Secrets:
    """One deployment's secrets for the whole session, as the rows in the shared test
    database (wrapped terminal keys, PIN hashes) are bound to them."""
    return Secrets(
        master_key=secrets.token_bytes(32),
        pin_pepper=secrets.token_bytes(32),
        admin_token=secrets.token_urlsafe(24),
    )


@pytest.fixture
def settings(database_url: str, gateway_secrets: Secrets) -> Settings:
    return Settings(
        secrets=gateway_secrets,
        database_url=database_url,
        argon2=TEST_ARGON2,
        pin_threads=2,
        max_amount_fen=500_000,
    )


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection for checking what the gateway wrote."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


class World:
    """Builds merchants, terminals and cards through the operator API."""

    def __init__(self, client: TestClient, settings: Settings) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {settings.secrets.admin_token}"}
        self.base_url = str(client.make_url("")).rstrip("/")

    async def admin(self, path: str, body: dict[str, Any] | None = None, status: int = 201) -> Any:
        resp = await self.client.post(path, json=body or {}, headers=self.headers)
        data = await resp.json()
        assert resp.status == status, data
        return data

    async def merchant(self, *, designated: bool = True, kind: str = "pharmacy") -> str:
        today = date.today()
        start, end = (
            (today - timedelta(days=365), today + timedelta(days=365))
            if designated
            else (today - timedelta(days=800), today - timedelta(days=30))
        )
        data = await self.admin(
            "/v1/admin/merchants",
            {
                "name": f"Test {kind} {secrets.token_hex(3)}",
                "kind": kind,
                "designated_from": start.isoformat(),
                "designated_until": end.isoformat(),
            },
        )
        return data["merchant_id"]

    async def terminal(self, merchant_id: str | None = None, **merchant: Any) -> Terminal:
        merchant_id = merchant_id or await self.merchant(**merchant)
        data = await self.admin("/v1/admin/terminals", {"merchant_id": merchant_id})
        config = TerminalConfig(
            data["terminal_id"], bytes.fromhex(data["mac_key"]), bytes.fromhex(data["pin_key"])
        )
        return Terminal(self.client.session, self.base_url, config, StanCounter(1))

    async def card(
        self, balance: int = 10_000, pin: str = "4321", expires_on: date | None = None
    ) -> dict[str, Any]:
        ssn = new_ssn()
        person = await self.admin(
            "/v1/admin/people",
            {"ssn": ssn, "name": "Test Holder", "opening_allocation": balance},
        )
        body: dict[str, Any] = {"ssn": ssn, "pin": pin}
        if expires_on is not None:
            body["expires_on"] = expires_on.isoformat()
        card = await self.admin("/v1/admin/cards", body)
        return {**card, "ssn": ssn, "pin": pin, "account_id": person["account_id"]}


@pytest.fixture
def world(client: TestClient, settings: Settings) -> World:
    return World(client, settings)


@pytest.fixture
async def ledger_clean(database_url: str) -> AsyncIterator[None]:
    """After the test: the whole ledger still checks out (pos-gateway verify-ledger)."""
    yield
    from pos_gateway.services.reports import verify_ledger

    conn = await asyncpg.connect(database_url)
    try:
        report = await verify_ledger(conn)
    finally:
        await conn.close()
    assert report["ok"], report["problems"]


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[DatabaseProxy]:
    """A TCP proxy in front of the test database that the test can break."""
    proxy = DatabaseProxy(database_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        proxy.heal()
        await proxy.cut()


@pytest.fixture
def gateway_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment under which `pos-gateway` commands run in-process use the test
    database and this session's secrets (with the cheap, bench-only PIN hash)."""
    monkeypatch.setenv("POS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("POS_MASTER_KEY", settings.secrets.master_key.hex())
    monkeypatch.setenv("POS_PIN_PEPPER", settings.secrets.pin_pepper.hex())
    monkeypatch.setenv("POS_ADMIN_TOKEN", settings.secrets.admin_token)
    monkeypatch.setenv("POS_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("POS_ARGON2_MEMORY_KIB", "64")
    monkeypatch.setenv("POS_ALLOW_WEAK_PIN_HASH", "bench")
    monkeypatch.setenv("POS_LOG_LEVEL", "warning")


@pytest.fixture
async def demo(gateway_env: None, tmp_path: Path) -> dict[str, Any]:
    """The demo world, written by `pos-gateway demo-data` into the test database."""
    return await run_demo_data(tmp_path / "demo.json")


# Browser tests (tests/test_browser.py): with POS_REQUIRE_BROWSER=1 (CI) a run in which none
# of them passed fails, whatever skipped them.
_browser_passed: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "browser" in report.keywords:
        _browser_passed.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("POS_REQUIRE_BROWSER") == "1" and not _browser_passed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if os.environ.get("POS_REQUIRE_BROWSER") == "1" and not _browser_passed:
        terminalreporter.write_line(
            "POS_REQUIRE_BROWSER=1 but no browser test passed: failing the run", red=True
        )
    elif _browser_passed:
        terminalreporter.write_line(f"browser tests passed: {len(_browser_passed)}")
