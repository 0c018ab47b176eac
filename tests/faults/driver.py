"""Terminals that behave as real ones do when an answer is lost: retransmit the same
request once; still no answer (or 91/96: outcome unknown) -> reverse it, and keep sending
the reversal until it is answered. Every request's latency is recorded with its time."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from terminal_sim.client import TRANSACTIONS_PATH, Answer, Terminal
from terminal_sim.protocol import encode_body

UNKNOWN = {"91", "96"}  # the outcome is unknown to the terminal: it reverses


@dataclass
class Sample:
    at: float  # monotonic time the request was sent
    latency_s: float
    outcome: str  # response code, "http_NNN", or "no_answer"


@dataclass
class Ledger:
    """What the terminals know, per PAN: approved and not reversed amounts."""

    approved: dict[str, dict[str, int]] = field(default_factory=dict)  # pan -> rrn -> amount
    samples: list[Sample] = field(default_factory=list)
    server_errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    reversal_first_blocked: int = 0
    reversal_first_violations: list[str] = field(default_factory=list)
    unresolved: int = 0
    rrns_seen: dict[str, tuple[str, str]] = field(default_factory=dict)  # rrn -> (term, stan)
    rrn_reused: list[str] = field(default_factory=list)

    def approve(self, terminal_id: str, stan: str, pan: str, answer: dict[str, Any]) -> None:
        rrn = answer["rrn"]
        if self.rrns_seen.setdefault(rrn, (terminal_id, stan)) != (terminal_id, stan):
            self.rrn_reused.append(rrn)
        self.approved.setdefault(pan, {})[rrn] = answer["amount"]

    def spent(self, pan: str) -> int:
        return sum(self.approved.get(pan, {}).values())

    def latencies(self, start: float, end: float) -> dict[str, float]:
        window = sorted(s.latency_s for s in self.samples if start <= s.at <= end)
        if not window:
            return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        p99 = window[min(len(window) - 1, int(len(window) * 0.99))]
        return {
            "n": len(window),
            "p50_ms": round(statistics.median(window) * 1000, 1),
            "p99_ms": round(p99 * 1000, 1),
            "max_ms": round(window[-1] * 1000, 1),
        }

    def outcomes(self, start: float, end: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for sample in self.samples:
            if start <= sample.at <= end:
                counts[sample.outcome] = counts.get(sample.outcome, 0) + 1
        return dict(sorted(counts.items()))

    def first_approval_after(self, moment: float) -> float | None:
        times = [s.at + s.latency_s for s in self.samples if s.at >= moment and s.outcome == "00"]
        return min(times) if times else None


class FaultTerminal:
    def __init__(
        self, terminal: Terminal, cards: list[dict[str, Any]], ledger: Ledger, seed: int
    ) -> None:
        self.terminal = terminal
        self.cards = cards
        self.ledger = ledger
        self.random = random.Random(seed)
        # Purchases approved and not reversed since the last close: the terminal's totals.
        self.batch = {"count": 0, "amount": 0}

    @property
    def terminal_id(self) -> str:
        return self.terminal.config.terminal_id

    async def _send(self, body: bytes) -> Answer | None:
        started = time.monotonic()
        try:
            answer = await self.terminal.send(TRANSACTIONS_PATH, body)
        except (aiohttp.ClientError, TimeoutError):
            self.ledger.samples.append(Sample(started, time.monotonic() - started, "no_answer"))
            return None
        outcome = answer.response_code if answer.status == 200 else f"http_{answer.status}"
        self.ledger.samples.append(Sample(started, time.monotonic() - started, str(outcome)))
        if answer.status >= 500:
            self.ledger.server_errors.append((answer.status, answer.body))
            return None
        return answer

    async def _send_retransmitting(self, body: bytes) -> Answer | None:
        """Send; a lost answer is retransmitted once, byte for byte."""
        answer = await self._send(body)
        if answer is None:
            answer = await self._send(body)
        return answer

    async def _reverse(self, original_stan: str, give_up_at: float) -> Answer | None:
        """Reverse until answered (the terminal keeps its reversal until it is)."""
        body = encode_body(self.terminal.transaction_body("reversal", original_stan=original_stan))
        while time.monotonic() < give_up_at:
            answer = await self._send(body)
            if answer is not None and answer.response_code not in UNKNOWN:
                return answer
            await asyncio.sleep(0.2)
        self.ledger.unresolved += 1
        return None

    async def purchase(self, give_up_at: float) -> None:
        card = self.random.choice(self.cards)
        amount = self.random.randint(1, 500)
        fields = self.terminal.transaction_body(
            "purchase", pan=card["pan"], pin=card["pin"], amount=amount
        )
        answer = await self._send_retransmitting(encode_body(fields))
        code = answer.response_code if answer is not None else None
        if code == "00":
            assert answer is not None
            self.ledger.approve(self.terminal_id, fields["stan"], card["pan"], answer.body)
            self.batch["count"] += 1
            self.batch["amount"] += answer.body["amount"]
        elif code is None or code in UNKNOWN:
            await self._reverse(fields["stan"], give_up_at)

    async def reversal_first(self, give_up_at: float) -> None:
        """The terminal reverses a request it never got an answer for, and the request
        itself arrives afterwards: it must be declined, never debited."""
        card = self.random.choice(self.cards)
        fields = self.terminal.transaction_body(
            "purchase", pan=card["pan"], pin=card["pin"], amount=77
        )
        reversal = await self._reverse(fields["stan"], give_up_at)
        if reversal is None or reversal.response_code != "00":
            return
        while time.monotonic() < give_up_at:
            answer = await self._send(encode_body(fields))
            if answer is None or answer.response_code in UNKNOWN:
                await asyncio.sleep(0.2)
                continue
            if answer.response_code == "00":
                self.ledger.reversal_first_violations.append(fields["stan"])
            else:
                self.ledger.reversal_first_blocked += 1
            return

    async def run(self, stop: asyncio.Event, give_up_at: float, pause_s: float) -> None:
        for _ in range(100_000):  # bounded; `stop` ends it long before
            if stop.is_set() or time.monotonic() >= give_up_at:
                return
            if self.random.random() < 0.05:
                await self.reversal_first(give_up_at)
            else:
                await self.purchase(give_up_at)
            await asyncio.sleep(pause_s)
