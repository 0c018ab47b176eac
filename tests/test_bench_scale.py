"""terminal-sim bench --scale, end to end at its smallest size: the COPY loader's counts
and the figures printed (no timing is asserted: figures are the bench's business)."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from terminal_sim.cli import main
from terminal_sim.scale import _luhn_complete
from tests.gateway_process import free_port


def _two_free_ports() -> int:
    """A free port whose next one is free too (the bench's ISO listener takes it)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def test_luhn_completion_gives_valid_numbers() -> None:
    assert _luhn_complete("7992739871") == "79927398713"  # the textbook example
    assert _luhn_complete("800000000000001")[-1] != _luhn_complete("800000000000002")[-1]


def test_bench_scale_loads_the_counts_asked_and_prints_its_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main([
        "bench", "--scale", "--scale-sizes", "1000", "--scale-journal-per-card", "3",
        "--scale-statement", "620", "--duration", "1", "--terminals", "4",
        "--port", str(_two_free_ports()), "--out-dir", str(out),
    ])  # fmt: skip

    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads((out / "scale.json").read_text())
    [step] = results["steps"]
    assert step["cards"] == 1000  # 20 through the API, 2 statement accounts, 978 by COPY
    # 3 per filler card, the two statements, and the API's allocations and purchases.
    assert step["journal_rows"] >= 978 * 3 + 620 + 10 + 20
    assert step["purchases"]["response_codes"].get("00", 0) > 0
    assert step["purchases"]["cpu"]["gateway"]["us_per_purchase"] > 0
    far, short = step["statement_far"], step["statement_short"]
    assert (far["entries_before"], far["entries"]) == (600, 20)  # the very end of 620
    assert short["entries"] == 10
    row = re.search(r"^\s+1,000\s+([\d,]+)\s", printed, re.MULTILINE)
    assert row is not None and int(row.group(1).replace(",", "")) == step["journal_rows"]
    assert "generator/gateway" in printed and "far page: 20 entries after 600" in printed
