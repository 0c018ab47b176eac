"""The simulator's refund, reversal and close-batch commands against a real gateway."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from terminal_sim import cli as sim_cli
from terminal_sim.protocol import StanCounter, parse_figures, parse_stan

from .helpers import run_demo_data


@pytest.fixture
async def demo_file(gateway_env: None, tmp_path: Path) -> Path:
    path = tmp_path / "demo.json"
    await run_demo_data(path)
    return path


class Sim:
    """terminal-sim as a user runs it, in a thread (the gateway runs in the test's loop)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], url: str, terminal: list[str]) -> None:
        self.capsys = capsys
        self.url = url
        self.terminal = terminal

    async def run(self, command: str, *args: str) -> tuple[int, str]:
        self.capsys.readouterr()
        rc = await asyncio.to_thread(
            sim_cli.main, [command, "--url", self.url, *self.terminal, *args]
        )
        return rc, self.capsys.readouterr().out

    async def json(self, command: str, *args: str) -> tuple[int, dict[str, Any]]:
        rc, out = await self.run(command, *args, "--json")
        return rc, json.loads(out)


@pytest.fixture
def sim(client, demo_file: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    url = str(client.make_url("")).rstrip("/")
    return Sim(capsys, url, ["--demo", str(demo_file), "--terminal", "pharm002"])


@pytest.fixture
async def own_terminal(world, client, capsys: pytest.CaptureFixture[str]) -> tuple[Sim, str]:
    """A fresh terminal (batch 1, nothing in it) given by explicit keys, and a card's PAN."""
    terminal = await world.terminal()
    card = await world.card(balance=50_000, pin="4321")
    config = terminal.config
    keys = [
        "--terminal-id", config.terminal_id,
        "--mac-key", config.mac_key.hex(),
        "--pin-key", config.pin_key.hex(),
    ]  # fmt: skip
    return Sim(capsys, str(client.make_url("")).rstrip("/"), keys), card["pan"]


def _stan() -> str:
    return f"{secrets.randbelow(999_999) + 1:06d}"


async def test_refund_command_credits_back_part_of_a_purchase(sim: Sim) -> None:
    rc, purchase = await sim.json("purchase", "--card", "card-03", "20.00")
    assert rc == 0 and purchase["response_code"] == "00"

    rc, refund = await sim.json("refund", "--original-rrn", purchase["rrn"], "7.50")
    rc_out, out = await sim.run(
        "refund", "--original-rrn", purchase["rrn"], "--card", "card-03", "12.51"
    )

    assert rc == 0
    assert refund["response_code"] == "00" and refund["amount"] == 750
    assert refund["balance"] == purchase["balance"] + 750
    # Above what is left of the original (12.50): refused, shown readably.
    assert rc_out == 0
    assert "'type': 'refund'" in out and f"'original_rrn': '{purchase['rrn']}'" in out
    assert "<- 13 " in out
    assert purchase["rrn"] and len(purchase["rrn"]) == 12


async def test_refund_of_an_unknown_rrn_is_12(sim: Sim) -> None:
    rc, refund = await sim.json("refund", "--original-rrn", "999999999999", "1.00")

    assert rc == 0 and refund["response_code"] == "12"


async def test_reversal_command_cancels_a_purchase(sim: Sim, db) -> None:
    stan = _stan()
    rc, before = await sim.json("balance", "--card", "card-07")
    assert rc == 0
    _, purchase = await sim.json("purchase", "--card", "card-07", "--stan", stan, "4.20")
    assert purchase["response_code"] == "00" and purchase["balance"] == before["balance"] - 420

    rc, out = await sim.run("reversal", "--original-stan", stan, "--card", "card-07")
    _, after = await sim.json("balance", "--card", "card-07")

    assert rc == 0
    assert "'type': 'reversal'" in out and f"'original_stan': '{stan}'" in out
    assert "<- 00 " in out
    assert after["balance"] == before["balance"]
    reversed_ = await db.fetchval(
        "SELECT reversed FROM transactions WHERE terminal_id = 'PHARM002' AND rrn = $1",
        purchase["rrn"],
    )
    assert reversed_ is True


async def test_reversal_before_its_original_blocks_it(sim: Sim) -> None:
    stan = _stan()

    rc, reversal = await sim.json("reversal", "--original-stan", stan, "--amount", "3.00")
    _, before = await sim.json("balance", "--card", "card-05")
    _, late = await sim.json("purchase", "--card", "card-05", "--stan", stan, "3.00")
    _, after = await sim.json("balance", "--card", "card-05")

    assert rc == 0 and reversal["response_code"] == "00"
    assert late["response_code"] != "00" and late["approved"] is False
    assert after["balance"] == before["balance"]


async def test_close_batch_with_the_right_figures_is_in_balance(
    own_terminal: tuple[Sim, str],
) -> None:
    sim, pan = own_terminal
    card = ["--pan", pan, "--pin", "4321"]
    _, first = await sim.json("purchase", *card, "12.50")
    _, second = await sim.json("purchase", *card, "3.30")
    _, declined = await sim.json("purchase", *card, "4000.00")  # 51: not in the totals
    _, refund = await sim.json("refund", "--original-rrn", first["rrn"], "1.00")
    assert [first["response_code"], second["response_code"], refund["response_code"]] == ["00"] * 3
    assert declined["response_code"] == "51"

    rc, out = await sim.run(
        "close-batch", "--batch-no", "1", "--purchases", "2:15.80", "--refunds", "1:1.00"
    )
    rc_again, again = await sim.json(
        "close-batch", "--batch-no", "1", "--purchases", "2:15.80", "--refunds", "1:1.00"
    )

    assert rc == 0
    assert "batch 1 closed, in balance; next batch 2" in out
    assert "2 for 15.80 CNY" in out and "1 for 1.00 CNY" in out
    assert rc_again == 0 and again["in_balance"] is True and again["batch_no"] == 1
    assert again["gateway"] == {
        "purchases": {"count": 2, "amount": 1580},
        "refunds": {"count": 1, "amount": 100},
    }
    assert again["next_batch_no"] == 2


async def test_close_batch_with_wrong_figures_is_out_of_balance_and_exits_1(
    own_terminal: tuple[Sim, str],
) -> None:
    sim, pan = own_terminal
    _, purchase = await sim.json("purchase", "--pan", pan, "--pin", "4321", "5.00")
    assert purchase["response_code"] == "00"

    rc, answer = await sim.json("close-batch", "--batch-no", "1", "--purchases", "1:4.00")
    # Without --batch-no the simulator asks the gateway which batch is open.
    rc_next, out = await sim.run("close-batch")

    assert rc == 1 and answer["in_balance"] is False
    assert answer["gateway"]["purchases"] == {"count": 1, "amount": 500}
    assert answer["terminal"]["purchases"] == {"count": 1, "amount": 400}
    assert rc_next == 0 and "batch 2 closed, in balance" in out  # the next batch was opened


async def test_close_batch_of_a_batch_that_is_not_open_is_refused(
    own_terminal: tuple[Sim, str],
) -> None:
    sim, _ = own_terminal

    rc, out = await sim.run("close-batch", "--batch-no", "3")
    rc_json, answer = await sim.json("close-batch", "--batch-no", "3")

    assert rc == 1 and "HTTP 409" in out and "batch_mismatch" in out
    assert "the open batch is 1" in out
    assert rc_json == 1 and answer["error"]["code"] == "batch_mismatch"


@pytest.mark.parametrize(
    "argv",
    [
        ["refund", "--original-rrn", "12345", "1.00"],
        ["refund", "--original-rrn", "123456789012", "1.234"],
        ["refund", "1.00"],
        ["reversal", "--original-stan", "1234567"],
        ["reversal"],
        ["close-batch", "--batch-no", "0"],
        ["close-batch", "--batch-no", "1", "--purchases", "3"],
        ["close-batch", "--batch-no", "1", "--refunds", "x:1.00"],
    ],
)
def test_bad_arguments_are_refused_before_sending(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        sim_cli.main([*argv, "--url", "http://127.0.0.1:9"])

    assert exit_.value.code == 2
    assert "terminal-sim" in capsys.readouterr().err


def test_a_terminal_is_needed(capsys: pytest.CaptureFixture[str]) -> None:
    rc = sim_cli.main(["refund", "--original-rrn", "123456789012", "1.00"])

    assert rc == 2
    assert "--terminal" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("purchase", ["amount", "--card", "--pin", "--terminal", "--stan"]),
        ("balance", ["--card", "--pin"]),
        ("cash-withdrawal", ["amount", "57"]),
        ("transfer", ["amount", "57"]),
        ("refund", ["--original-rrn", "RRN", "12 digits", "amount", "no pin"]),
        ("reversal", ["--original-stan", "STAN", "--amount"]),
        ("close-batch", ["--batch-no", "--purchases", "COUNT:AMOUNT", "--refunds", "409"]),
        ("load", ["--terminals", "--duration", "--rate", "--mix", "--timeout", "--json OUT"]),
        ("scenario", ["file", "--demo"]),
        ("wait", ["--url", "--timeout"]),
    ],
)
def test_every_command_explains_its_arguments(
    command: str, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        sim_cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split()).lower()

    assert exit_.value.code == 0
    assert text.startswith(f"usage: terminal-sim {command}")
    for word in words:
        assert word.lower() in text, word


@pytest.mark.parametrize(
    ("text", "figures"),
    [("3:37.50", {"count": 3, "amount": 3750}), ("0:0", {"count": 0, "amount": 0})],
)
def test_batch_figures_convert_exactly_to_fen(text: str, figures: dict[str, int]) -> None:
    assert parse_figures(text) == figures


@pytest.mark.parametrize("text", ["3", "3:", ":1.00", "-1:1.00", "1:1.001", "a:1"])
def test_bad_batch_figures_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_figures(text)


def test_stans_are_padded_to_six_digits() -> None:
    assert parse_stan("42") == "000042"
    assert parse_stan("123456") == "123456"
    for bad in ("", "1234567", "12a", "-1", "１２"):
        with pytest.raises(ValueError):
            parse_stan(bad)


def test_stan_counter_wraps_within_its_range() -> None:
    counter = StanCounter(999_998)
    assert [counter.next() for _ in range(3)] == ["999998", "999999", "000001"]
    sliced = StanCounter(11, first=10, last=11)
    assert [sliced.next() for _ in range(3)] == ["000011", "000010", "000011"]
    with pytest.raises(ValueError):
        StanCounter(5, first=10, last=20)
