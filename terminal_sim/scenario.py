"""Scripted scenarios in TOML: steps, expected response codes and balances.

name = "Demo"
[[step]]
title = "Buy medicine"
terminal = "pharm001"          # terminal id or alias from the demo file
type = "purchase"
card = "card-01"               # card alias or PAN from the demo file
amount = "12.50"               # CNY, converted exactly to fen
pin = "wrong"                  # optional: "wrong" sends a wrong PIN; default the card's
expect = "00"                  # expected response code (or HTTP status as "http:401")
expect_balance_change = "-12.50"   # against the card's last balance seen in this run
expect_balance = "487.50"      # or an absolute balance
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from terminal_sim.client import Answer, Terminal, TerminalConfig
from terminal_sim.demo import DemoWorld
from terminal_sim.protocol import StanCounter, format_amount, mask_pan, parse_amount

_STEP_KEYS = {
    "title", "terminal", "type", "card", "amount", "pin", "expect",
    "expect_balance", "expect_balance_change",
}  # fmt: skip


class ScenarioError(ValueError):
    """The scenario file itself is wrong (unknown key, missing card...)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    title: str
    ok: bool
    problems: tuple[str, ...]
    answer: Answer


def load_scenario(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    steps = data.get("step")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError("a scenario needs at least one [[step]]")
    for number, step in enumerate(steps, 1):
        unknown = set(step) - _STEP_KEYS
        if unknown:
            raise ScenarioError(f"step {number}: unknown key(s) {sorted(unknown)}")
        for key in ("terminal", "type", "expect"):
            if key not in step:
                raise ScenarioError(f"step {number}: {key!r} is required")
    return data


def _wrong_pin(pin: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in pin)


def describe_request(body: dict[str, Any]) -> dict[str, Any]:
    """What is printed of a request: PAN masked, the PIN block never shown."""
    shown = dict(body)
    if "pan" in shown:
        shown["pan"] = mask_pan(shown["pan"])
    if "pin_block" in shown:
        shown["pin_block"] = "<format-4 PIN block>"
    return shown


async def run_scenario(
    scenario: dict[str, Any], world: DemoWorld, base_url: str, out: TextIO = sys.stdout
) -> list[StepResult]:
    results: list[StepResult] = []
    balances: dict[str, int] = {}
    terminals: dict[str, Terminal] = {}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        print(f"Scenario: {scenario.get('name', 'unnamed')}", file=out)
        for number, step in enumerate(scenario["step"], 1):
            entry = world.terminal(step["terminal"])
            terminal = terminals.get(entry["terminal_id"])
            if terminal is None:
                terminal = Terminal(
                    session, base_url, TerminalConfig.from_demo(entry), StanCounter()
                )
                terminals[entry["terminal_id"]] = terminal
            card = world.card(step["card"]) if "card" in step else None
            fields: dict[str, Any] = {}
            if card is not None:
                fields["pan"] = card["pan"]
                if step["type"] in ("purchase", "balance_inquiry"):
                    pin = card["pin"]
                    fields["pin"] = (
                        _wrong_pin(pin) if step.get("pin") == "wrong" else step.get("pin", pin)
                    )
            if "amount" in step:
                fields["amount"] = parse_amount(str(step["amount"]))
            body, answer = await terminal.transact(step["type"], **fields)
            title = step.get("title", step["type"])
            print(f"\n[{number}] {title}  (terminal {entry['terminal_id']})", file=out)
            print(f"  -> {describe_request(body)}", file=out)
            print(f"  <- HTTP {answer.status} {answer.body}", file=out)
            problems = _check(step, answer, card, balances)
            if card is not None and "balance" in answer.body:
                balances[card["pan"]] = answer.body["balance"]
            verdict = "ok" if not problems else "MISMATCH: " + "; ".join(problems)
            print(f"  {verdict}", file=out)
            results.append(StepResult(title, not problems, tuple(problems), answer))
    passed = sum(r.ok for r in results)
    print(f"\n{passed} passed, {len(results) - passed} failed", file=out)
    return results


def _check(
    step: dict[str, Any], answer: Answer, card: dict[str, Any] | None, balances: dict[str, int]
) -> list[str]:
    problems = []
    expect = str(step["expect"])
    if expect.startswith("http:"):
        if str(answer.status) != expect[5:]:
            problems.append(f"expected HTTP {expect[5:]}, got {answer.status}")
    elif answer.response_code != expect:
        problems.append(f"expected response code {expect}, got {answer.response_code}")
    balance = answer.body.get("balance")
    if "expect_balance" in step:
        wanted = parse_amount(str(step["expect_balance"]))
        if balance != wanted:
            problems.append(f"expected balance {format_amount(wanted)}, got {balance}")
    if "expect_balance_change" in step:
        text = str(step["expect_balance_change"]).strip()
        change = -parse_amount(text[1:]) if text.startswith("-") else parse_amount(text.lstrip("+"))
        before = balances.get(card["pan"]) if card else None
        if before is None:
            problems.append("expect_balance_change needs an earlier balance for this card")
        elif balance != before + change:
            problems.append(
                f"expected balance {format_amount(before + change)}, got "
                f"{format_amount(balance) if isinstance(balance, int) else balance}"
            )
    return problems
