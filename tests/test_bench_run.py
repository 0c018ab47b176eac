"""terminal-sim bench end to end at its shortest: every figure of issue 13 is measured,
printed against its target and written to bench.json (no timing is asserted: figures
are the bench's business)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from terminal_sim.bench import RUNS
from terminal_sim.cli import main

from .test_bench_scale import _two_free_ports


def test_one_bench_run_gives_every_target_and_the_cpu_split_of_every_load_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main([
        "bench", "--duration", "1", "--terminals", "4", "--cards", "8",
        "--port", str(_two_free_ports()), "--out-dir", str(out),
    ])  # fmt: skip

    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads((out / "bench.json").read_text())
    for key, _ in RUNS:
        run = results[key]
        assert run["response_codes"].get("00", 0) > 0, key
        assert run["errors"] == {}, key
        assert run["cpu"]["gateway"]["us_per_purchase"] > 0, key
        assert run["cpu"]["generator_to_gateway"] is not None, key
    # The production-hash open model runs at half the PIN-bound rate.
    production = results["latency_at_half_rate_production"]
    assert production["rate"] == pytest.approx(results["pin_bound"]["purchases_per_s"] / 2, abs=1)
    assert results["pin_verification"]["cpu_ms"] > 0
    assert results["pgbench"]["cpu_us_per_transaction"]["postgres"] > 0
    assert set(results["ratios_by_cpu"]) == {"pin_bound", "db_bound"}
    names = [t["name"] for t in results["targets"]]
    assert len(names) == 4 + len(RUNS) and all(
        isinstance(t["met"], bool) for t in results["targets"]
    )
    # The last table, one line per target, after the CPU split of every run.
    table = printed[printed.index("Targets (issue 13)") :]
    assert all(name in table for name in names)
    assert printed.index("production hash, closed  ") < printed.index("cheap hash, closed  ")
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (out / "bench.png").exists() == has_matplotlib
