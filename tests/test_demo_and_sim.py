"""The demo world contract (DESIGN §7), the scenario runner, and the simulator CLI."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from terminal_sim import cli as sim_cli
from terminal_sim.demo import DemoWorld
from terminal_sim.protocol import parse_amount
from terminal_sim.scenario import ScenarioError, load_scenario, run_scenario

from .helpers import run_demo_data

ROOT = Path(__file__).resolve().parents[1]


async def test_demo_world_meets_the_contract(demo: dict[str, Any], tmp_path: Path) -> None:
    kinds = {(m["kind"], m["designated"]) for m in demo["merchants"]}
    with_terminals = {t["merchant_id"] for t in demo["terminals"]}
    statuses = Counter(c["status"] for c in demo["cards"])

    assert {("pharmacy", True), ("hospital", True)} <= kinds
    assert any(not m["designated"] for m in demo["merchants"])
    assert {m["merchant_id"] for m in demo["merchants"]} == with_terminals
    assert statuses["active"] >= 10 and statuses["lost"] == 1 and statuses["expired"] == 1
    assert all(c["balance"] > 0 for c in demo["cards"])
    assert sum(c["contributions_stopped"] for c in demo["cards"]) == 1
    assert all(len(bytes.fromhex(t["pin_key"])) == 16 for t in demo["terminals"])
    assert isinstance(demo["admin_token"], str) and demo["admin_token"]
    assert os.stat(tmp_path / "demo.json").st_mode & 0o077 == 0  # keys inside: owner only


async def test_demo_data_twice_reuses_and_never_duplicates(
    demo: dict[str, Any], tmp_path: Path, db
) -> None:
    again = await run_demo_data(tmp_path / "again.json")

    assert [c["pan"] for c in again["cards"]] == [c["pan"] for c in demo["cards"]]
    assert again["terminals"] == demo["terminals"]  # same keys handed out again
    pans = [c["pan"] for c in demo["cards"]]
    stored = await db.fetchval("SELECT count(*) FROM cards WHERE pan = ANY($1::text[])", pans)
    assert stored == len(pans)


async def test_demo_scenario_passes_against_the_gateway(
    demo: dict[str, Any], client, tmp_path: Path
) -> None:
    out = io.StringIO()
    results = await run_scenario(
        load_scenario(ROOT / "scenarios" / "demo.toml"),
        DemoWorld(demo),
        str(client.make_url("")),
        out,
    )

    assert results and all(r.ok for r in results), out.getvalue()
    printed = out.getvalue()
    assert "pin_block" in printed and "<format-4 PIN block>" in printed
    for card in demo["cards"]:
        assert card["pan"] not in printed


async def test_scenario_mismatch_fails_the_cli(
    demo: dict[str, Any], client, tmp_path: Path
) -> None:
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    scenario = tmp_path / "bad.toml"
    scenario.write_text(
        '[[step]]\nterminal = "pharm001"\ntype = "purchase"\ncard = "card-02"\n'
        'amount = "1.00"\nexpect = "51"\n'
    )
    url = str(client.make_url("")).rstrip("/")

    rc = await asyncio.to_thread(
        sim_cli.main,
        ["scenario", str(scenario), "--url", url, "--demo", str(tmp_path / "demo.json")],
    )

    assert rc == 1


async def test_single_purchase_command_prints_the_answer(
    demo: dict[str, Any], client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    url = str(client.make_url("")).rstrip("/")
    args = ["--url", url, "--demo", str(tmp_path / "demo.json"), "--terminal", "hosp0001"]

    rc = await asyncio.to_thread(
        sim_cli.main, ["purchase", *args, "--card", "card-05", "--json", "3.30"]
    )
    answer = json.loads(capsys.readouterr().out)

    assert rc == 0
    assert answer["response_code"] == "00" and answer["amount"] == 330


@pytest.mark.parametrize(
    ("text", "fen"),
    [("12.50", 1250), ("0.01", 1), ("100", 10000), ("0.1", 10), ("19.99", 1999), ("7.", 700)],
)
def test_amounts_convert_exactly_to_fen(text: str, fen: int) -> None:
    assert parse_amount(text) == fen


@pytest.mark.parametrize("text", ["1.234", "-1", "abc", "", "nan", "inf", "1e-3"])
def test_bad_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(text)


def test_scenario_with_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[step]]\nterminal = "x"\ntype = "purchase"\nexpect = "00"\nexpekt = 1\n')

    with pytest.raises(ScenarioError, match="unknown key"):
        load_scenario(path)


async def test_scenario_batch_totals_follow_refunds_and_reversals(
    demo: dict[str, Any], client, tmp_path: Path
) -> None:
    scenario = tmp_path / "batch.toml"
    scenario.write_text(
        """
[[step]]
terminal = "pharm002"
type = "close_batch"
expect = "http:200"

[[step]]
terminal = "pharm002"
type = "purchase"
card = "card-05"
amount = "30.00"
save = "a"
expect = "00"

[[step]]
terminal = "pharm002"
type = "refund"
original = "a"
amount = "10.00"
expect = "00"

[[step]]
terminal = "pharm002"
type = "reversal"
original = "a"
expect = "12"

[[step]]
terminal = "pharm002"
type = "purchase"
card = "card-05"
amount = "5.00"
expect = "00"

[[step]]
terminal = "pharm002"
type = "close_batch"
expect = "http:200"
expect_in_balance = true
"""
    )
    out = io.StringIO()

    results = await run_scenario(
        load_scenario(scenario), DemoWorld(demo), str(client.make_url("")), out
    )

    assert all(r.ok for r in results), out.getvalue()
    # A purchase with a refund cannot be reversed (12): both stay in the batch.
    assert results[-1].answer.body["gateway"]["purchases"] == {"count": 2, "amount": 3_500}
    assert results[-1].answer.body["gateway"]["refunds"] == {"count": 1, "amount": 1_000}
