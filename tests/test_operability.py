"""Operability findings (issue 10, point 7): what a new user ran into, each with its test."""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from terminal_sim.demo import DemoWorld
from terminal_sim.scenario import load_scenario, run_scenario

from .conftest import World
from .helpers import new_ssn, run_demo_data
from .insurance_helpers import business_today, contribute, get, this_month, ym

ROOT = Path(__file__).resolve().parents[1]


async def test_scenario_close_batch_refused_401_is_a_failed_step_not_a_crash(
    demo: dict[str, Any], client, tmp_path: Path
) -> None:
    wrong_keys = copy.deepcopy(demo)
    for terminal in wrong_keys["terminals"]:
        terminal["mac_key"] = "5a" * (len(terminal["mac_key"]) // 2)
    scenario = tmp_path / "close.toml"
    scenario.write_text(
        '[[step]]\nterminal = "pharm001"\ntype = "close_batch"\nexpect = "http:200"\n'
    )
    out = io.StringIO()

    results = await run_scenario(
        load_scenario(scenario), DemoWorld(wrong_keys), str(client.make_url("")), out
    )

    [step] = results
    assert not step.ok and step.answer.status == 401
    assert "HTTP 401" in out.getvalue() and "expected HTTP 200, got 401" in out.getvalue()


async def test_demo_data_reports_the_cards_as_the_database_has_them(
    demo: dict[str, Any], world: World, tmp_path: Path, db
) -> None:
    card = next(c for c in demo["cards"] if c["status"] == "active")
    await world.admin(f"/v1/admin/cards/{card['pan']}/report-lost", status=200)
    try:
        again = await run_demo_data(tmp_path / "again.json")
    finally:
        # The demo world is shared by the session's tests: give the card back.
        await db.execute("UPDATE cards SET status = 'active' WHERE pan = $1", card["pan"])

    statuses = {c["pan"]: c["status"] for c in again["cards"]}
    assert statuses[card["pan"]] == "lost"
    assert [s for p, s in statuses.items() if p != card["pan"]] == [
        c["status"] for c in demo["cards"] if c["pan"] != card["pan"]
    ]


async def test_contribution_posted_again_with_other_amounts_is_409_saying_what_differs(
    world: World,
) -> None:
    ssn = new_ssn()
    await world.admin("/v1/admin/people", {"ssn": ssn, "name": "Li Na"})
    month = {"month": "2019-03", "employer_part": 60_000, "individual_part": 20_000}
    path = f"/v1/admin/people/{ssn}/contributions"
    await world.admin(path, month)

    same = await world.admin(path, month, status=200)
    other = await world.admin(path, {**month, "individual_part": 21_000}, status=409)
    trail = await get(world, "/v1/admin/audit", subject_id=ssn, action="contribution.corrected")

    assert same == {"month": "2019-03", "created": False}
    assert other["error"]["code"] == "contribution_differs"
    assert "individual_part: recorded 20000, sent 21000" in other["error"]["message"]
    assert "employer_part" not in other["error"]["message"]
    assert trail["entries"] == []


async def test_a_correction_changes_the_month_and_is_audited_with_its_reason(
    world: World,
) -> None:
    ssn = new_ssn()
    await world.admin("/v1/admin/people", {"ssn": ssn, "name": "Li Na"})
    path = f"/v1/admin/people/{ssn}/contributions"
    await world.admin(path, {"month": "2019-04", "employer_part": 60_000, "individual_part": 1})
    fix = {"employer_part": 60_000, "individual_part": 20_000, "reason": "typo at the counter"}

    corrected = await world.admin(f"{path}/2019-04/correction", fix, status=200)
    now_same = await world.admin(
        path, {"month": "2019-04", "employer_part": 60_000, "individual_part": 20_000}, 200
    )
    missing = await world.admin(f"{path}/2019-05/correction", fix, status=404)
    trail = await get(world, "/v1/admin/audit", subject_id=ssn, action="contribution.corrected")

    assert corrected == {
        "month": "2019-04", "employer_part": 60_000, "individual_part": 20_000, "corrected": True
    }  # fmt: skip
    assert now_same["created"] is False
    assert missing["error"]["code"] == "not_found"
    [entry] = trail["entries"]
    assert entry["details"] == {
        "month": "2019-04",
        "before": {"employer_part": 60_000, "individual_part": 1},
        "after": {"employer_part": 60_000, "individual_part": 20_000},
        "reason": "typo at the counter",
    }


async def test_a_person_registered_again_under_another_name_is_409(world: World) -> None:
    ssn = new_ssn()
    await world.admin("/v1/admin/people", {"ssn": ssn, "name": "Li Na"})

    again = await world.admin("/v1/admin/people", {"ssn": ssn, "name": "Li Na"}, status=200)
    other = await world.admin("/v1/admin/people", {"ssn": ssn, "name": "Wang Fang"}, status=409)

    assert again["created"] is False
    assert other["error"]["code"] == "person_differs"
    assert "name: recorded 'Li Na', sent 'Wang Fang'" in other["error"]["message"]
    person = await get(world, f"/v1/admin/people/{ssn}")
    assert person["name"] == "Li Na"


async def test_a_persons_notice_does_not_list_months_before_the_hiring_as_missing(
    world: World,
) -> None:
    employer = await world.admin("/v1/admin/employers", {"name": "Chaoyang Textile Co."})
    ssn = new_ssn()
    await world.admin("/v1/admin/people", {"ssn": ssn, "name": "Zhao Lei"})
    await world.admin(
        "/v1/admin/employments",
        {
            "ssn": ssn,
            "employer_id": employer["employer_id"],
            "hired_on": this_month(-1).isoformat(),
        },
    )
    await contribute(world, ssn, this_month(-1))

    notice = await get(
        world,
        f"/v1/admin/people/{ssn}/contributions",
        **{"from": ym(this_month(-4)), "to": ym(this_month(0))},
    )

    assert [(m["month"], m["status"]) for m in notice["months"]] == [
        (ym(this_month(-1)), "paid"),
        (ym(this_month(0)), "missing"),
    ]
    assert notice["missing_months"] == [ym(this_month(0))]


async def test_settlement_defaults_to_today_and_ends_with_totals(world: World) -> None:
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await world.card(balance=100_000)
    _, a = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=5_000)
    await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=2_000)
    await terminal.transact("refund", original_rrn=a.body["rrn"], amount=1_000)

    body = await get(world, "/v1/admin/settlement", merchant_id=merchant)
    text = await get(world, "/v1/admin/settlement", merchant_id=merchant, format="csv")
    everyone = await get(world, "/v1/admin/settlement")

    assert body["date"] == business_today().isoformat()
    [row] = body["merchants"]
    assert body["totals"] == {
        "purchases_count": 2, "purchases_amount": 7_000, "refunds_count": 1,
        "refunds_amount": 1_000, "reversals_count": 0, "reversals_amount": 0,
        "net_amount": 6_000,
    }  # fmt: skip
    assert {k: row[k] for k in body["totals"]} == body["totals"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["merchant_id"] for r in rows] == [merchant, "TOTAL"]
    assert rows[-1]["net_amount"] == "60.00"  # CSVs are read by people: yuan
    assert everyone["totals"]["net_amount"] == sum(m["net_amount"] for m in everyone["merchants"])


def test_make_demo_refuses_a_port_another_process_holds(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "POS_DEMO_PORT": str(port),
            "POS_DATA_DIR": str(tmp_path / "data"),
        }
        run = subprocess.run(  # noqa: S603
            ["sh", str(ROOT / "scripts" / "demo.sh")],  # noqa: S607
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    assert run.returncode == 1
    assert f"port {port} is already in use" in run.stderr
    assert "starting the gateway" not in run.stdout


def test_exit_statuses_and_the_amount_limit_are_documented() -> None:
    from pos_gateway.cli import build_parser as gateway_parser
    from terminal_sim.cli import build_parser as sim_parser

    sim_help, gateway_help = sim_parser().format_help(), gateway_parser().format_help()
    readme = (ROOT / "README.md").read_text()

    assert "exit status:" in sim_help and "includes declines" in sim_help
    for text in (sim_help, gateway_help, readme):
        assert "POS_MAX_AMOUNT_FEN" in text and "5000000" in text


async def test_the_documented_exit_statuses_hold(world: World, client, capsys) -> None:
    """A decline exits 0 (the response code says it), a refusal 1, as --help says."""
    from terminal_sim import cli as sim_cli

    terminal = await world.terminal()
    card = await world.card(balance=100)
    keys = [
        "--url", str(client.make_url("")).rstrip("/"),
        "--terminal-id", terminal.config.terminal_id,
        "--mac-key", terminal.config.mac_key.hex(),
        "--pin-key", terminal.config.pin_key.hex(),
    ]  # fmt: skip
    buy = ["purchase", *keys, "--pan", card["pan"], "--pin", "4321", "--json"]

    declined = await asyncio.to_thread(sim_cli.main, [*buy, "5.00"])
    out = capsys.readouterr().out
    keys[keys.index("--mac-key") + 1] = "00" * len(terminal.config.mac_key)
    refused = await asyncio.to_thread(
        sim_cli.main, ["purchase", *keys, "--pan", card["pan"], "--pin", "4321", "0.50"]
    )

    assert (declined, json.loads(out)["response_code"]) == (0, "51")
    assert refused == 1
