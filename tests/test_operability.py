"""Operability findings (issue 10, point 7): what a new user ran into, each with its test."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

from terminal_sim.demo import DemoWorld
from terminal_sim.scenario import load_scenario, run_scenario

from .conftest import World
from .helpers import run_demo_data


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
