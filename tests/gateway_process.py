"""Real gateway processes (`pos-gateway serve`) for tests that kill, stop and restart
them: each on an ephemeral port, on a data directory or database URL given by the test."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from terminal_sim.client import Terminal, TerminalConfig, wait_healthy
from terminal_sim.protocol import StanCounter

from .helpers import new_ssn

# Cheap PIN hashing: the faults are about the database and the process, not argon2.
CHEAP_HASH_ENV = {
    "POS_ARGON2_TIME_COST": "1",
    "POS_ARGON2_MEMORY_KIB": "64",
    "POS_ARGON2_PARALLELISM": "1",
    "POS_ALLOW_WEAK_PIN_HASH": "bench",
    "POS_LOG_LEVEL": "warning",
}


@contextlib.contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A temp directory of our own: pytest's numbered tmp dirs are rotated away by any
    other pytest run of the same user, even under a server that is still running."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gateway_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POS_")}
    env.update(CHEAP_HASH_ENV)
    env["POS_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def run_cli(env: dict[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "pos_gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@dataclass
class GatewayProcess:
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "pos_gateway", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_healthy(self, timeout_s: float = 90) -> bool:
        return await wait_healthy(self.url, timeout_s, self.alive)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError as exc:
            return f"(no log: {exc})"

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        if self.alive():
            self.signal(signal.SIGKILL)
            assert self.process is not None
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 60) -> int | None:
        """A clean exit (SIGTERM, as a service manager sends); its exit code."""
        if self.process is None:
            return None
        if self.alive():
            self.signal(signal.SIGCONT)  # a stopped process cannot exit
            self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=30)


def postmaster_pid(data_dir: Path) -> int | None:
    """The live postmaster of the embedded cluster under `data_dir`, or None."""
    pid_file = data_dir / "pg" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def wait_for(condition, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def fresh_secrets_env() -> dict[str, str]:
    return {
        "POS_MASTER_KEY": secrets.token_hex(32),
        "POS_PIN_PEPPER": secrets.token_hex(32),
        "POS_ADMIN_TOKEN": secrets.token_urlsafe(32),
    }


class ServedWorld:
    """Merchants, terminals and cards made through the operator API of a served gateway."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, admin_token: str) -> None:
        self.session = session
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {admin_token}"}

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(
            method, self.base_url + path, json=body, headers=self.headers
        ) as resp:
            data = await resp.json()
            assert resp.status in (200, 201), (path, resp.status, data)
            return data

    async def merchant(self) -> str:
        today = date.today()
        merchant = await self.admin(
            "POST",
            "/v1/admin/merchants",
            {
                "name": f"Fault pharmacy {secrets.token_hex(3)}",
                "kind": "pharmacy",
                "designated_from": (today - timedelta(days=30)).isoformat(),
                "designated_until": (today + timedelta(days=365)).isoformat(),
            },
        )
        return merchant["merchant_id"]

    async def terminal(self, merchant_id: str | None = None) -> Terminal:
        merchant_id = merchant_id or await self.merchant()
        data = await self.admin("POST", "/v1/admin/terminals", {"merchant_id": merchant_id})
        config = TerminalConfig(
            data["terminal_id"], bytes.fromhex(data["mac_key"]), bytes.fromhex(data["pin_key"])
        )
        return Terminal(self.session, self.base_url, config, StanCounter(1))

    async def card(self, balance: int, pin: str = "4321") -> dict[str, Any]:
        ssn = new_ssn()
        person = await self.admin(
            "POST",
            "/v1/admin/people",
            {"ssn": ssn, "name": "Fault Holder", "opening_allocation": balance},
        )
        card = await self.admin("POST", "/v1/admin/cards", {"ssn": ssn, "pin": pin})
        return {**card, "pin": pin, "account_id": person["account_id"]}
