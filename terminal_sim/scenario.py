"""Scripted scenarios in TOML: steps, expected response codes and balances.

name = "Demo"
[[step]]
title = "Buy medicine"
terminal = "pharm001"          # terminal id or alias from the demo file
type = "purchase"              # purchase | balance_inquiry | cash_withdrawal | transfer
                               # | refund | reversal | close_batch
card = "card-01"               # card alias or PAN from the demo file
amount = "12.50"               # CNY, converted exactly to fen
pin = "wrong"                  # optional: "wrong" sends a wrong PIN; default the card's
save = "medicine"              # remember this answer for a later refund or reversal
expect = "00"                  # expected response code, or an HTTP status as "http:409"
expect_balance_change = "-12.50"   # against the card's last balance seen in this run
expect_balance = "487.50"      # or an absolute balance
expect_amount = "12.50"        # the amount in the answer (e.g. what a reversal returned)

[[step]]
type = "purchase"              # or "settlement_trial" (DESIGN §10; PIN only if `pin` given)
items = ["XJ01CAA001:2:25.00", "XA11GAA001:1:18.00"]   # CODE:QTY:PRICE; amount = their sum
account_max = "10.00"          # optional: the most the individual account pays
expect_fund = "0"              # optional: the pooled fund's part of the split
expect_covered = false         # optional: the split's coverage verdict

[[step]]
type = "refund"                # or "reversal"
original = "medicine"          # a saved step: refund uses its RRN, reversal its STAN

[[step]]
type = "close_batch"           # sends the totals this run kept for the terminal
expect = "http:200"
expect_in_balance = true       # optional
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from terminal_sim.client import Answer, Terminal, TerminalConfig
from terminal_sim.demo import DemoWorld
from terminal_sim.iso import IsoConnection, IsoTerminal
from terminal_sim.items import batch_amount, items_total, parse_items, render_split
from terminal_sim.protocol import (
    StanCounter,
    format_amount,
    mask_pan,
    parse_amount,
)

_STEP_KEYS = {
    "title", "terminal", "type", "card", "amount", "pin", "expect", "save", "original",
    "expect_balance", "expect_balance_change", "expect_amount", "expect_in_balance",
    "items", "account_max", "expect_fund", "expect_covered",
}  # fmt: skip
_TYPES = {
    "purchase", "balance_inquiry", "cash_withdrawal", "transfer", "refund", "reversal",
    "close_batch", "settlement_trial",
}  # fmt: skip
_PIN_TYPES = {"purchase", "balance_inquiry"}


class ScenarioError(ValueError):
    """The scenario file itself is wrong (unknown key, missing card...)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    title: str
    ok: bool
    problems: tuple[str, ...]
    answer: Answer


@dataclass
class BatchTotals:
    """What a terminal counts itself since its last close, as a real terminal does."""

    purchases: list[int] = field(default_factory=lambda: [0, 0])
    refunds: list[int] = field(default_factory=lambda: [0, 0])

    def as_request(self) -> dict[str, dict[str, int]]:
        return {
            "purchases": {"count": self.purchases[0], "amount": self.purchases[1]},
            "refunds": {"count": self.refunds[0], "amount": self.refunds[1]},
        }


def load_scenario(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    steps = data.get("step")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError("a scenario needs at least one [[step]]")
    saved: set[str] = set()
    for number, step in enumerate(steps, 1):
        unknown = set(step) - _STEP_KEYS
        if unknown:
            raise ScenarioError(f"step {number}: unknown key(s) {sorted(unknown)}")
        for key in ("terminal", "type", "expect"):
            if key not in step:
                raise ScenarioError(f"step {number}: {key!r} is required")
        if step["type"] not in _TYPES:
            raise ScenarioError(f"step {number}: unknown type {step['type']!r}")
        if step["type"] in ("refund", "reversal") and step.get("original") not in saved:
            raise ScenarioError(f"step {number}: 'original' must name an earlier saved step")
        if "items" in step:
            try:
                _step_items(step)
            except ValueError as exc:
                raise ScenarioError(f"step {number}: {exc}") from None
        if "save" in step:
            saved.add(step["save"])
    return data


def _step_items(step: dict[str, Any]) -> list[dict[str, Any]]:
    raw = step["items"]
    return parse_items(",".join(raw) if isinstance(raw, list) else str(raw))


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


class _Run:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        world: DemoWorld,
        base_url: str,
        iso: tuple[str, int] | None = None,
        show: Callable[[str], None] | None = None,
    ) -> None:
        self.session = session
        self.world = world
        self.base_url = base_url.rstrip("/")
        self.iso = iso
        self.show = show
        self.terminals: dict[str, Terminal | IsoTerminal] = {}
        self.totals: dict[str, BatchTotals] = {}
        self.balances: dict[str, int] = {}
        self.saved: dict[str, dict[str, Any]] = {}

    def terminal(self, name: str) -> Terminal | IsoTerminal:
        entry = self.world.terminal(name)
        tid = entry["terminal_id"]
        if tid not in self.terminals:
            config = TerminalConfig.from_demo(entry)
            self.terminals[tid] = (
                IsoTerminal(IsoConnection(*self.iso), config, StanCounter(), show=self.show)
                if self.iso
                else Terminal(self.session, self.base_url, config, StanCounter())
            )
            self.totals[tid] = BatchTotals()
        return self.terminals[tid]

    async def step(self, step: dict[str, Any]) -> tuple[dict[str, Any], Answer]:
        terminal = self.terminal(step["terminal"])
        txn_type = step["type"]
        if txn_type == "close_batch":
            return await self._close_batch(terminal)
        fields: dict[str, Any] = {}
        card = self.world.card(step["card"]) if "card" in step else None
        if card is not None:
            fields["pan"] = card["pan"]
            if txn_type in _PIN_TYPES or (txn_type == "settlement_trial" and "pin" in step):
                pin = card["pin"]
                fields["pin"] = (
                    _wrong_pin(pin) if step.get("pin") == "wrong" else step.get("pin", pin)
                )
        if "amount" in step:
            fields["amount"] = parse_amount(str(step["amount"]))
        if "items" in step:
            fields["items"] = _step_items(step)
            fields.setdefault("amount", items_total(fields["items"]))
        if "account_max" in step:
            fields["account_max"] = parse_amount(str(step["account_max"]))
        original = self.saved.get(step.get("original", ""))
        if txn_type in ("refund", "reversal") and original is None:
            raise ScenarioError(f"{txn_type}: no earlier step saved as {step.get('original')!r}")
        if txn_type == "refund":
            fields["original_rrn"] = original["answer"]["rrn"]  # type: ignore[index]
        if txn_type == "reversal":
            fields["original_stan"] = original["answer"]["stan"]  # type: ignore[index]
        sender: Terminal | IsoTerminal = terminal
        if isinstance(terminal, IsoTerminal) and _json_only(step):
            # ISO 8583 carries no items (DESIGN §10 is JSON only): the same terminal, with
            # the same STAN counter, sends this one as JSON; its batch counts it as usual.
            sender = Terminal(self.session, self.base_url, terminal.config, terminal.stans)
        body, answer = await sender.transact(txn_type, **fields)
        self._count(terminal, txn_type, answer, original)
        if "save" in step:
            self.saved[step["save"]] = {"answer": answer.body, "type": txn_type}
        return body, answer

    def _count(
        self, terminal: Terminal | IsoTerminal, txn_type: str, answer: Answer, original: dict | None
    ) -> None:
        if answer.body.get("response_code") != "00":
            return
        totals = self.totals[terminal.config.terminal_id]
        amount = batch_amount(answer.body)
        if txn_type == "purchase":
            totals.purchases[0] += 1
            totals.purchases[1] += amount
        elif txn_type == "refund":
            totals.refunds[0] += 1
            totals.refunds[1] += amount
            assert original is not None
            original.setdefault("refunds", []).append(amount)
        elif txn_type == "reversal" and amount and original and original["type"] == "purchase":
            # A reversed purchase leaves the batch, and its refunds with it.
            totals.purchases[0] -= 1
            totals.purchases[1] -= batch_amount(original["answer"])
            refunds = original.get("refunds", [])
            totals.refunds[0] -= len(refunds)
            totals.refunds[1] -= sum(refunds)

    async def _close_batch(self, terminal: Terminal | IsoTerminal) -> tuple[dict[str, Any], Answer]:
        tid = terminal.config.terminal_id
        opened = await terminal.open_batch()
        if opened.status != 200 or not isinstance(opened.body.get("batch_no"), int):
            # Refused (401 unknown terminal or wrong key, 403 disabled...): that answer is
            # the step's outcome, printed and counted as failed like any other.
            return {}, opened
        totals = self.totals[tid].as_request()
        body, answer = await terminal.close_batch(
            opened.body["batch_no"], totals["purchases"], totals["refunds"]
        )
        if answer.status == 200:
            self.totals[tid] = BatchTotals()
        return body, answer


async def run_scenario(
    scenario: dict[str, Any],
    world: DemoWorld,
    base_url: str,
    out: TextIO = sys.stdout,
    *,
    iso: tuple[str, int] | None = None,
    show: Callable[[str], None] | None = None,
) -> list[StepResult]:
    """Run the steps in order; with `iso` = (host, port), over ISO 8583 instead of JSON."""
    results: list[StepResult] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        run = _Run(session, world, base_url, iso, show)
        transport = f"ISO 8583 at {iso[0]}:{iso[1]}" if iso else f"JSON at {base_url}"
        print(f"Scenario: {scenario.get('name', 'unnamed')} ({transport})", file=out)
        try:
            await _steps(run, scenario, world, results, out)
        finally:
            for terminal in run.terminals.values():
                if isinstance(terminal, IsoTerminal):
                    await terminal.close()
    passed = sum(r.ok for r in results)
    # Not "N passed, N failed": CI would read that line as a test runner's summary.
    print(f"\nscenario: {passed} of {len(results)} steps as expected", file=out)
    return results


async def _steps(
    run: _Run,
    scenario: dict[str, Any],
    world: DemoWorld,
    results: list[StepResult],
    out: TextIO,
) -> None:
    for number, step in enumerate(scenario["step"], 1):
        body, answer = await run.step(step)
        card = world.card(step["card"]) if "card" in step else None
        title = step.get("title", step["type"])
        tid = run.terminal(step["terminal"]).config.terminal_id
        print(f"\n[{number}] {title}  (terminal {tid})", file=out)
        print(f"  -> {describe_request(body)}", file=out)
        how = "ISO 8583" if run.iso and not _json_only(step) else f"HTTP {answer.status}"
        print(f"  <- {how} {answer.body}", file=out)
        if isinstance(answer.body.get("split"), dict):
            print(render_split(answer.body["split"]), file=out)
        problems = _check(step, answer, card, run.balances)
        if card is not None and "balance" in answer.body:
            run.balances[card["pan"]] = answer.body["balance"]
        verdict = "ok" if not problems else "MISMATCH: " + "; ".join(problems)
        print(f"  {verdict}", file=out)
        results.append(StepResult(title, not problems, tuple(problems), answer))


def _json_only(step: dict[str, Any]) -> bool:
    """Itemised steps and trials: DESIGN §10 is carried by the JSON protocol only."""
    return "items" in step or step["type"] == "settlement_trial"


def _signed_amount(text: str) -> int:
    text = text.strip()
    return -parse_amount(text[1:]) if text.startswith("-") else parse_amount(text.lstrip("+"))


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
    if "expect_amount" in step:
        wanted = parse_amount(str(step["expect_amount"]))
        if answer.body.get("amount") != wanted:
            problems.append(
                f"expected amount {format_amount(wanted)}, got {answer.body.get('amount')}"
            )
    if "expect_in_balance" in step and answer.body.get("in_balance") != step["expect_in_balance"]:
        problems.append(
            f"expected in_balance {step['expect_in_balance']}, got {answer.body.get('in_balance')}"
        )
    split = answer.body.get("split") or {}
    if "expect_fund" in step and split.get("fund") != parse_amount(str(step["expect_fund"])):
        problems.append(f"expected fund {step['expect_fund']}, got {split.get('fund')}")
    if "expect_covered" in step and split.get("covered") is not step["expect_covered"]:
        problems.append(f"expected covered {step['expect_covered']}, got {split.get('covered')}")
    if "expect_balance_change" in step:
        change = _signed_amount(str(step["expect_balance_change"]))
        before = balances.get(card["pan"]) if card else None
        if before is None:
            problems.append("expect_balance_change needs an earlier balance for this card")
        elif balance != before + change:
            got = format_amount(balance) if isinstance(balance, int) else balance
            problems.append(f"expected balance {format_amount(before + change)}, got {got}")
    return problems
