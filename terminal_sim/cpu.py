"""Where a run's CPU goes: the gateway, PostgreSQL and the load generator, from each
process's own CPU times (user + system, as the kernel counts them), per purchase.

A snapshot before and after a run; a process born during the run counts from zero. A
process that ends during the run loses its share (the bench keeps its processes up).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

# The load generator should cost at most this fraction of what the gateway costs, so that
# it never becomes the limit as the gateway gets faster (issue 13).
GENERATOR_SHARE_LIMIT = 0.2
PARTS = ("gateway", "postgres", "generator")


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def postmaster_pid(pgdata: Path) -> int | None:
    """The postmaster's pid from PGDATA/postmaster.pid (its first line), if running."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


def server_cpu_seconds(pgdata: Path) -> float:
    """CPU seconds so far of the whole PostgreSQL server: the postmaster, its live
    children, and the children it has reaped (backends of connections since closed, such
    as pgbench's), which the kernel adds to the postmaster's children's times."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return 0.0
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += _cpu_seconds(child)
    return total


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU seconds so far of each process, by part: {part: {pid: seconds}}."""

    seconds: dict[str, dict[int, float]]

    @classmethod
    def take(cls, gateway_pid: int | None, pgdata: Path | None) -> CpuSnapshot:
        parts: dict[str, dict[int, float]] = {part: {} for part in PARTS}
        postgres_root = postmaster_pid(pgdata) if pgdata is not None else None
        for part, root_pid in (("gateway", gateway_pid), ("postgres", postgres_root)):
            if root_pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(root_pid)
                for process in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        # An embedded server started by the gateway may be its child:
                        # its processes are PostgreSQL's, whoever their parent is.
                        name = process.name()
                        owner = "postgres" if name.startswith("postgres") else part
                        parts[owner][process.pid] = _cpu_seconds(process)
        parts["generator"][0] = _cpu_seconds(psutil.Process())
        return cls(parts)


def cpu_split(
    before: CpuSnapshot, after: CpuSnapshot, purchases: int, elapsed_s: float
) -> dict[str, Any]:
    """CPU-µs per purchase and cores busy, for each part; and the generator/gateway ratio."""
    split: dict[str, Any] = {}
    for part in PARTS:
        was = before.seconds[part]
        used = sum(max(now - was.get(pid, 0.0), 0.0) for pid, now in after.seconds[part].items())
        split[part] = {
            "cpu_s": round(used, 3),
            "us_per_purchase": round(used * 1e6 / purchases, 1) if purchases else None,
            "cores": round(used / elapsed_s, 3) if elapsed_s > 0 else None,
        }
    gateway_s = split["gateway"]["cpu_s"]
    ratio = split["generator"]["cpu_s"] / gateway_s if gateway_s > 0 else None
    split["generator_to_gateway"] = round(ratio, 3) if ratio is not None else None
    split["generator_over_limit"] = ratio is not None and ratio > GENERATOR_SHARE_LIMIT
    return split


def render_split(split: dict[str, Any]) -> str:
    """'gateway 390 µs, PostgreSQL 205 µs, generator 160 µs (0.41 of the gateway: over 0.2)'."""

    def us(part: str) -> str:
        value = split[part]["us_per_purchase"]
        return "-" if value is None else f"{value:,.0f} µs"

    ratio = split["generator_to_gateway"]
    flag = f" OVER {GENERATOR_SHARE_LIMIT}" if split["generator_over_limit"] else ""
    ratio_text = "-" if ratio is None else f"{ratio:.2f}"
    return (
        f"gateway {us('gateway')}, PostgreSQL {us('postgres')}, generator {us('generator')}"
        f" (generator/gateway {ratio_text}{flag})"
    )
