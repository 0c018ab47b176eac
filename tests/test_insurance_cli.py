"""pos-gateway eligibility and pos-gateway allocate (the commands `make demo` and a
monthly job use)."""

from __future__ import annotations

import asyncio
import json

import pytest

from pos_gateway import cli as gateway_cli
from pos_gateway.logs import configure_logging

from .conftest import World
from .helpers import new_ssn
from .insurance_helpers import contribute, own_past_month, ym

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def _run(*argv: str) -> int:
    try:
        return await asyncio.to_thread(gateway_cli.main, list(argv))
    finally:
        configure_logging("info")  # the CLI configured logging for itself


async def test_eligibility_of_the_demo_person_whose_contributions_stopped(
    demo: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    [stopped] = [c for c in demo["cards"] if c["contributions_stopped"]]
    [paying] = [c for c in demo["cards"] if c["alias"] == "card-01"]
    capsys.readouterr()

    assert await _run("eligibility", "--ssn", stopped["ssn"]) == 0
    text = capsys.readouterr().out
    assert await _run("eligibility", "--ssn", paying["ssn"], "--json") == 0
    covered = json.loads(capsys.readouterr().out)

    assert "NOT COVERED (contributions_interrupted)" in text
    assert "usable at the POS" in text
    assert stopped["ssn"] not in text  # shown masked
    assert covered["covered"] is True and covered["reason"] == "contribution_paid_for_month"


async def test_eligibility_on_a_date_and_for_an_unknown_person(
    gateway_env: None, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    card = await world.card()
    month = own_past_month()
    await contribute(world, card["ssn"], month)
    capsys.readouterr()

    assert (
        await _run("eligibility", "--ssn", card["ssn"], "--date", f"{ym(month)}-15", "--json") == 0
    )
    on_date = json.loads(capsys.readouterr().out)
    assert await _run("eligibility", "--ssn", new_ssn()) == 1
    unknown = capsys.readouterr().err

    assert on_date["covered"] is True and on_date["month"] == ym(month)
    assert "no such person" in unknown


async def test_allocate_command_is_idempotent(
    gateway_env: None, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    card = await world.card(balance=1)
    month = own_past_month()
    await contribute(world, card["ssn"], month, 1_000, 300)
    capsys.readouterr()

    assert await _run("allocate", "--month", ym(month), "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert await _run("allocate", "--month", ym(month)) == 0
    second_text = capsys.readouterr().out
    assert await _run("allocate", "--month", ym(month), "--json") == 0
    second = json.loads(capsys.readouterr().out)

    assert "this run: 0 people credited ¥0.00" in second_text
    assert "Asia/Shanghai" in second_text and "¥6.00 to individual accounts" in second_text

    assert first["this_run"]["persons"] == 1 and first["this_run"]["amount"] == 600
    assert second["this_run"]["persons"] == 0
    assert second["allocated"]["amount"] == 600
