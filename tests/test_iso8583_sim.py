"""terminal-sim over ISO 8583: single commands, sign-on and echo, the demo scenario and
load runs, against the gateway's listener."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pos_gateway.app import ISO_LISTENER
from pos_gateway.settings import Settings
from terminal_sim import cli as sim_cli
from terminal_sim.demo import DemoWorld
from terminal_sim.scenario import load_scenario, run_scenario

from .test_load import _assert_report_matches_the_gateway, _load_run

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("ledger_clean")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, iso_port=0)


@pytest.fixture
def iso_port(client) -> int:
    return client.server.app[ISO_LISTENER].port


async def test_demo_scenario_passes_over_iso(demo: dict[str, Any], client, iso_port: int) -> None:
    out = io.StringIO()
    shown: list[str] = []
    results = await run_scenario(
        load_scenario(ROOT / "scenarios" / "demo.toml"),
        DemoWorld(demo),
        str(client.make_url("")),
        out,
        iso=("127.0.0.1", iso_port),
        show=shown.append,
    )
    assert results and all(r.ok for r in results), out.getvalue()
    printed = out.getvalue() + "\n".join(shown)
    assert "ISO 8583" in printed and "MTI 0200" in printed and "MTI 0510" in printed
    assert "<PIN block>" in printed and "<MAC>" in printed
    # The itemised steps (DESIGN §10, JSON only) went as JSON from the same terminal.
    assert "<- HTTP 200" in out.getvalue() and "split, covered: total 106.00" in out.getvalue()
    for card in demo["cards"]:
        assert card["pan"] not in printed


async def test_sim_commands_over_iso(
    demo: dict[str, Any],
    client,
    iso_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    demo_path = tmp_path / "demo-iso.json"
    demo_path.write_text(json.dumps(demo))
    common = ["--url", str(client.make_url("")), "--demo", str(demo_path),
              "--terminal", "hosp0001", "--iso-port", str(iso_port)]  # fmt: skip
    iso = [*common, "--protocol", "iso8583"]

    async def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        rc = await asyncio.to_thread(sim_cli.main, list(args))
        return rc, capsys.readouterr().out

    rc, out = await run("sign-on", *common)
    assert rc == 0 and "MTI 0810" in out and " 39 response code     00" in out
    assert "60 batch" in out
    rc, out = await run("echo", *common, "--show-fields")
    assert rc == 0 and "70 network code      301" in out and "MTI 0800" in out

    rc, out = await run("purchase", *iso, "--card", "card-03", "--show-fields", "2.50")
    card = next(c for c in demo["cards"] if c["alias"] == "card-03")
    assert rc == 0 and "<- 00 Approved" in out and "amount 2.50 CNY" in out
    assert card["pan"] not in out and "<PIN block>" in out and "<MAC>" in out
    stan = next(line.split()[-1] for line in out.splitlines() if "11 STAN" in line)
    rc, out = await run("balance", *iso, "--card", "card-03", "--json")
    balance = json.loads(out)["balance"]
    rc, out = await run("reversal", *iso, "--original-stan", stan, "--json")
    assert rc == 0 and json.loads(out)["response_code"] == "00"
    rc, out = await run("balance", *iso, "--card", "card-03", "--json")
    assert json.loads(out)["balance"] == balance + 250
    rc, out = await run("cash-withdrawal", *iso, "--card", "card-03", "--json", "1.00")
    assert json.loads(out)["response_code"] == "57"
    rc, out = await run("close-batch", *common, "--protocol", "iso8583", "--purchases", "0:0")
    assert "batch" in out and "closed" in out

    capsys.readouterr()
    rc = await asyncio.to_thread(
        sim_cli.main, ["purchase", *common[:-2], "--protocol", "iso8583", "--card", "card-03", "1"]
    )
    assert rc == 2 and "--iso-port" in capsys.readouterr().err


async def test_closed_load_run_over_iso_matches_the_gateway(
    demo: dict[str, Any], client, iso_port: int, db, tmp_path: Path
) -> None:
    report, delta = await _load_run(
        demo, client, db, tmp_path, "--terminals", "3", "--duration", "2", "--timeout", "30",
        "--protocol", "iso8583", "--iso-port", str(iso_port),
    )  # fmt: skip
    assert report["model"] == "closed" and report["protocol"] == "iso8583"
    _assert_report_matches_the_gateway(report, delta)


async def test_open_load_run_over_iso_pipelines_and_matches_the_gateway(
    demo: dict[str, Any], client, iso_port: int, db, tmp_path: Path
) -> None:
    report, delta = await _load_run(
        demo, client, db, tmp_path, "--terminals", "2", "--duration", "2", "--rate", "30",
        "--timeout", "30", "--protocol", "iso8583", "--iso-port", str(iso_port),
        "--mix", "purchase=8,balance_inquiry=1,transfer=1", "--seed", "3",
    )  # fmt: skip
    assert report["model"] == "open" and report["sent"] == 60
    _assert_report_matches_the_gateway(report, delta)
    assert set(report["by_type"].get("transfer", {})) <= {"sent", "57"}


@pytest.mark.parametrize(
    "fields",
    [
        {"t": "0210", "3": "000000", "4": "000000000100", "11": "000123", "12": "101010",
         "13": "1201", "37": "000000000001", "38": "123456", "39": "00", "41": "TERM0001",
         "49": "156", "54": "0002156C000000010000"},
        {"t": "0200", "2": "6217990000000000018", "3": "000000", "4": "000000000100",
         "11": "000124", "12": "101010", "13": "1201", "41": "TERM0001", "49": "156",
         "52": "00112233445566778899AABBCCDDEEFF"},
        {"t": "0410", "3": "000000", "11": "000125", "39": "00", "41": "TERM0001",
         "90": "0200000124120110101000000000000000000000000"[:42]},
        {"t": "0810", "11": "000126", "39": "63", "41": "TERM0001", "70": "001"},
    ],
)  # fmt: skip
def test_the_lean_decoder_reads_the_text_fields_as_the_codec_does(fields: dict[str, str]) -> None:
    from terminal_sim.iso import decode, encode
    from terminal_sim.lean import answer_fields

    for key in (None, bytes(range(16))):
        raw = encode(fields, key)
        full = decode(raw)
        binary = {"p", "1", "52", "64", "128"}
        assert answer_fields(raw) == {k: v for k, v in full.items() if k not in binary}
        with pytest.raises(ValueError):
            answer_fields(raw[:-1])
        with pytest.raises(ValueError):
            answer_fields(raw + b"0")


async def test_load_runs_over_iso_with_requests_made_ahead_match_the_gateway(
    demo: dict[str, Any], client, iso_port: int, db, tmp_path: Path
) -> None:
    """The lean ISO client sends requests MACed before the run; the gateway approves
    them as any others. The open model sends exactly those; a closed run that uses up
    its terminal's makes the rest as it goes."""
    for model, ahead in ((("--rate", "20"), 30), ((), 6)):
        report, delta = await _load_run(
            demo, client, db, tmp_path, "--terminals", "3", "--duration", "1.5",
            "--timeout", "30", "--protocol", "iso8583", "--iso-port", str(iso_port),
            "--mix", "purchase=1", "--prepare-ahead", str(ahead), *model,
        )  # fmt: skip
        _assert_report_matches_the_gateway(report, delta)
        assert report["prepared_ahead"] == ahead
        assert report["made_during_run"] == report["sent"] - ahead
