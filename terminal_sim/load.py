"""Load test: N simulated terminals against one gateway URL for a bounded time.

Two models:
- open (`rate` set): requests leave on a fixed schedule, `rate` per second in total,
  whether or not earlier ones were answered; each latency is measured from the request's
  *intended* send time, so a gateway that queues cannot hide it by slowing the sender
  (coordinated omission);
- closed (no `rate`): each simulated terminal sends its next request when the previous
  answer arrives, as a real terminal does.

A simulated terminal borrows a real terminal's id and keys from the demo file; several may
share one, each with its own slice of the STAN range, so (terminal, date, STAN) never
repeats within a run. A money-moving request that gets no answer in time is reversed, as a
real terminal would, by a reversal naming its STAN, retransmitted until answered.

The generator shares the machine with the gateway, so it spends as little CPU as it can
while a run is measured: with `prepare_ahead`, requests are made before the run starts
(cards and types drawn, PIN blocks enciphered, bodies signed or MACed: the gateway takes
a JSON request's timestamp for 300 s and checks only the date of an ISO 8583 one), and
lean clients (terminal_sim.lean) send them. A run longer than the window makes its
requests as it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from terminal_sim.client import TRANSACTIONS_PATH, Answer, TerminalConfig
from terminal_sim.demo import DemoWorld
from terminal_sim.iso import IsoConnectionLost
from terminal_sim.lean import LeanIsoTerminal, LeanTerminal
from terminal_sim.protocol import STAN_LAST, StanCounter, encode_body, pin_block
from terminal_sim.report import LoadStats, Progress, build_report

MIX_TYPES = ("purchase", "balance_inquiry", "cash_withdrawal", "transfer")
_MIX_ALIASES = {"balance": "balance_inquiry"}
PIN_TYPES = frozenset({"purchase", "balance_inquiry", "cash_withdrawal", "transfer"})
# Requests that may have moved money (or been recorded as such): reversed on a timeout.
# A balance inquiry changes nothing, so a terminal just gives up on it.
REVERSIBLE = frozenset({"purchase", "cash_withdrawal", "transfer"})
REVERSAL_ATTEMPTS = 3
DEFAULT_MIX = "purchase=90,balance_inquiry=10"
MAX_TERMINALS = 10_000
MAX_DURATION_S = 3600.0
PROGRESS_INTERVAL_S = 0.5
# A closed-model terminal that cannot connect waits this long before trying again, so a
# gateway that is down is not hammered in a busy loop.
CONNECTION_BACKOFF_S = 0.1


STAN_COLLISION_RETRIES = 4
# Prepared requests are used only by a run that ends within this many seconds of their
# making: well inside the gateway's default timestamp window of 300 s.
PREPARED_MAX_AGE_S = 240.0
MAX_PREPARED = 1_000_000


class LoadError(ValueError):
    """The load test cannot start as asked (bad mix, no designated terminal...)."""


def parse_mix(text: str) -> dict[str, int]:
    """'purchase=90,balance_inquiry=10' -> {'purchase': 90, 'balance_inquiry': 10}.

    Weights are non-negative integers, relative to their sum (which must be positive)."""
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        name = name.strip().replace("-", "_")
        name = _MIX_ALIASES.get(name, name)
        weight = weight.strip()
        if not sep or not name:
            raise LoadError(f"a mix is TYPE=WEIGHT,…, e.g. {DEFAULT_MIX}: not {part.strip()!r}")
        if name not in MIX_TYPES:
            raise LoadError(f"unknown type {name!r} in the mix (one of {', '.join(MIX_TYPES)})")
        if name in mix:
            raise LoadError(f"{name} appears twice in the mix")
        if not (weight.isascii() and weight.isdigit()):
            raise LoadError(f"the weight of {name} must be a non-negative integer: {weight!r}")
        mix[name] = int(weight)
    if sum(mix.values()) == 0:
        raise LoadError("the weights of the mix add up to zero")
    return mix


@dataclass(frozen=True, slots=True)
class SimulatedTerminal:
    """One simulated terminal: a real terminal's identity and its own STAN slice."""

    index: int
    config: TerminalConfig
    first_stan: int
    last_stan: int

    @property
    def stan_count(self) -> int:
        return self.last_stan - self.first_stan + 1


def plan_terminals(entries: Sequence[dict[str, Any]], count: int) -> list[SimulatedTerminal]:
    """Deal `count` simulated terminals round-robin over the real terminals; the k
    simulated terminals sharing a real one split 1..999999 into k disjoint slices."""
    if not entries:
        raise LoadError("no terminal to simulate")
    if not 1 <= count <= MAX_TERMINALS:
        raise LoadError(f"the number of terminals must be 1..{MAX_TERMINALS}")
    plan = []
    for index in range(count):
        real = index % len(entries)
        sharing = (count - real + len(entries) - 1) // len(entries)  # indexes ≡ real
        slot = index // len(entries)
        size = STAN_LAST // sharing
        first = 1 + slot * size
        plan.append(
            SimulatedTerminal(
                index=index,
                config=TerminalConfig.from_demo(entries[real]),
                first_stan=first,
                last_stan=first + size - 1,
            )
        )
    return plan


def designated_terminals(world: DemoWorld) -> list[dict[str, Any]]:
    """Terminals of designated merchants: their purchases can be approved."""
    designated_merchants = {
        m["merchant_id"] for m in world.data.get("merchants", []) if m.get("designated")
    }
    return [
        t
        for t in world.data.get("terminals", [])
        if t.get("designated", t.get("merchant_id") in designated_merchants)
    ]


def active_cards(world: DemoWorld) -> list[dict[str, Any]]:
    return [c for c in world.data.get("cards", []) if c.get("status") == "active"]


@dataclass(frozen=True, slots=True)
class LoadConfig:
    url: str
    terminals: int
    duration_s: float
    rate: float | None = None  # total requests per second; None: closed model
    mix: dict[str, int] = field(default_factory=lambda: parse_mix(DEFAULT_MIX))
    amount_fen: int = 100
    timeout_s: float = 5.0
    seed: int | None = None
    iso: tuple[str, int] | None = None  # (host, port): ISO 8583 instead of JSON over HTTP
    itemised_share: float = 0.0  # of purchases, sent with catalogue items (DESIGN §10)
    prepare_ahead: int = 0  # requests made before the run starts (see the module's doc)

    def __post_init__(self) -> None:
        if not 0 <= self.itemised_share <= 1:
            raise LoadError("the itemised share must be between 0 and 1")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise LoadError(f"the duration must be more than 0 and at most {MAX_DURATION_S:g} s")
        if self.rate is not None and not 0 < self.rate <= 100_000:
            raise LoadError("the rate must be more than 0 and at most 100000 requests/s")
        if not 0 < self.timeout_s <= 300:
            raise LoadError("the timeout must be more than 0 and at most 300 s")
        if self.amount_fen <= 0:
            raise LoadError("the amount must be more than 0")
        if not 0 <= self.prepare_ahead <= MAX_PREPARED:
            raise LoadError(f"requests prepared ahead must be 0..{MAX_PREPARED}")

    @property
    def model(self) -> str:
        return "closed" if self.rate is None else "open"

    def settings(self) -> dict[str, Any]:
        """The run's parameters, echoed at the top of the report."""
        return {
            "url": self.url,
            "model": self.model,
            "terminals": self.terminals,
            "duration_s": self.duration_s,
            "rate": self.rate,
            "mix": self.mix,
            "amount_fen": self.amount_fen,
            "timeout_s": self.timeout_s,
            "protocol": "iso8583" if self.iso else "json",
            "itemised_share": self.itemised_share,
        }


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request ready to go: its type and label, its body (for a reversal or a resend)
    and its bytes on the connection."""

    txn_type: str
    label: str
    body: dict[str, Any]
    wire: bytes


def _is_94(answer: Answer) -> bool:
    return answer.status == 200 and answer.body.get("response_code") == "94"


class StanSpaceExhausted(Exception):
    """A simulated terminal has used every STAN of its slice: another would repeat one."""


class LoadTerminal:
    """A simulated terminal at run time: its signing client and the STANs it has used."""

    def __init__(
        self,
        plan: SimulatedTerminal,
        session: aiohttp.ClientSession,
        url: str,
        iso: tuple[str, int] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.plan = plan
        # Random start within the slice, wrapping inside it: a second run on the same day
        # seldom meets the first one's STANs, and within a run none repeats. Never from
        # the seeded generator: two runs with one --seed must not replay the same STANs.
        start = plan.first_stan + secrets.randbelow(plan.stan_count)
        stans = StanCounter(start, first=plan.first_stan, last=plan.last_stan)
        # Over ISO 8583 each simulated terminal keeps one connection, pipelining on it in
        # the open model, as a terminal does. Over HTTP, keep-alive connections of a lean
        # client, so that the generator costs little of the CPU the gateway shares.
        self.terminal: LeanTerminal | LeanIsoTerminal = (
            LeanIsoTerminal(*iso, plan.config, stans, timeout_s=timeout_s)
            if iso
            else LeanTerminal(session, url, plan.config, stans, timeout_s=timeout_s)
        )
        self.issued = 0
        self.ahead: deque[Prepared] = deque()

    def next_stan(self) -> str:
        if self.issued >= self.plan.stan_count:
            raise StanSpaceExhausted(self.plan.index)
        self.issued += 1
        return self.terminal.stans.next()


class LoadRun:
    def __init__(
        self,
        config: LoadConfig,
        world: DemoWorld,
        session: aiohttp.ClientSession,
        stats: LoadStats | None = None,
    ) -> None:
        self.config = config
        self.stats = stats or LoadStats()
        self._rng = random.Random(config.seed if config.seed is not None else secrets.randbits(64))
        entries = designated_terminals(world)
        if not entries:
            raise LoadError("the demo file has no terminal of a designated merchant")
        self._cards = active_cards(world)
        if not self._cards:
            raise LoadError("the demo file has no active card")
        self._sims = [
            LoadTerminal(plan, session, config.url, config.iso, config.timeout_s)
            for plan in plan_terminals(entries, config.terminals)
        ]
        self._types = list(config.mix)
        self._weights = list(config.mix.values())
        self._reversals: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[str]] = set()  # requests on the slow path
        self._waiters: list[asyncio.Future[None]] = []  # what run() awaits
        self._pin_blocks: dict[tuple[str, str], str] = {}
        self._codes = [item["code"] for item in world.data.get("catalogue", [])]
        if config.itemised_share > 0 and not self._codes:
            raise LoadError("itemised purchases need the demo file's catalogue")
        self._prepared_at: float | None = None
        self.made_during_run = 0  # requests the run made as it went (none prepared left)

    def prepare(self, count: int) -> None:
        """Make `count` requests now, dealt round-robin to the simulated terminals as the
        open model sends them; a closed run takes each terminal's own in order."""
        for number in range(count):
            sim = self._sims[number % len(self._sims)]
            try:
                sim.ahead.append(self._make(sim))
            except StanSpaceExhausted:
                break
        self._prepared_at = time.perf_counter()

    async def run(self) -> float:
        """Send for the configured duration, wait for answers and reversals; return the
        elapsed seconds from the first send to the last answer."""
        start = time.perf_counter()
        if (
            self._prepared_at is not None
            and start + self.config.duration_s - self._prepared_at > PREPARED_MAX_AGE_S
        ):
            for sim in self._sims:  # their timestamps would run out during the run
                sim.ahead.clear()
        self.stats.started = start
        end = start + self.config.duration_s
        loop = asyncio.get_running_loop()
        if self.config.rate is None:
            finished = [loop.create_future() for _ in self._sims]
            self._waiters.extend(finished)
            for sim, done in zip(self._sims, finished, strict=True):
                self._closed_step(sim, end, done)
            await asyncio.gather(*finished)
        else:
            await self._open_schedule(start, end, self.config.rate)
        elapsed = time.perf_counter() - start
        while self._tasks or self._reversals:
            await asyncio.gather(*self._tasks, *self._reversals)
        for sim in self._sims:
            if isinstance(sim.terminal, LeanIsoTerminal):
                await sim.terminal.close()
            else:
                await sim.terminal.aclose()
        return elapsed

    # A request goes by the fast path when its terminal has a connection open and free:
    # sent at once, its answer counted in the connection's callback, and (closed model)
    # the terminal's next request sent from there. Anything else - no free connection, a
    # 94, a timeout or a broken connection - goes on in a task (`_send`, `_after`).

    def _closed_step(self, sim: LoadTerminal, end: float, finished: asyncio.Future[None]) -> None:
        """Send the terminal's next request, or resolve `finished` after the end."""
        now = time.perf_counter()
        prepared = self._take(sim) if now < end else None
        if prepared is None:
            if not finished.done():
                finished.set_result(None)
            return

        def then(outcome: str) -> None:
            if outcome == "exhausted":
                if not finished.done():
                    finished.set_result(None)
            elif outcome == "connection":
                asyncio.get_running_loop().call_later(
                    CONNECTION_BACKOFF_S, self._closed_step, sim, end, finished
                )
            else:
                self._closed_step(sim, end, finished)

        if not self._fast(sim, prepared, now, then):
            self._spawn(self._send(sim, prepared, now), then)

    async def _open_schedule(self, start: float, end: float, rate: float) -> None:
        """Send `rate` requests per second from `start` until `end`, from a timer callback
        (no task per request); return when every one is answered or given up."""
        loop = asyncio.get_running_loop()
        all_answered: asyncio.Future[None] = loop.create_future()
        self._waiters.append(all_answered)
        to_loop_time = loop.time() - time.perf_counter()
        outstanding, number, sending = 0, 0, True

        def then(outcome: str) -> None:
            nonlocal outstanding
            outstanding -= 1
            if outstanding == 0 and not sending and not all_answered.done():
                all_answered.set_result(None)

        def tick() -> None:
            nonlocal outstanding, number, sending
            try:
                now = time.perf_counter()
                # Behind schedule (a slow client loop), it sends every request due at
                # once: the lag shows in the latency, measured from `intended`.
                while (intended := start + number / rate) <= now and intended < end:
                    sim = self._sims[number % len(self._sims)]
                    number += 1
                    prepared = self._take(sim)
                    if prepared is None:
                        continue
                    outstanding += 1
                    if not self._fast(sim, prepared, intended, then):
                        self._spawn(self._send(sim, prepared, intended), then)
                if intended < end:
                    loop.call_at(intended + to_loop_time, tick)
                    return
                sending = False
                if outstanding == 0 and not all_answered.done():
                    all_answered.set_result(None)
            except Exception as exc:  # a bug: stop the run rather than hang it
                self._fail(exc)

        tick()
        await all_answered

    def _take(self, sim: LoadTerminal) -> Prepared | None:
        """The terminal's next request, prepared or made now; None (counted) if its
        STANs are used up."""
        if sim.ahead:
            return sim.ahead.popleft()
        try:
            prepared = self._make(sim)
        except StanSpaceExhausted:
            self.stats.error("purchase", "stan_exhausted")
            return None
        self.made_during_run += 1
        return prepared

    def _fast(
        self, sim: LoadTerminal, prepared: Prepared, intended: float, then: Callable[[str], None]
    ) -> bool:
        """Send on a free open connection and count the answer in its callback, then
        `then(outcome)`; False (nothing sent) if the terminal has no free connection."""
        sent_at = time.perf_counter()

        def done(result: Answer | BaseException) -> None:
            try:
                if isinstance(result, Answer) and not _is_94(result):
                    self.stats.answer(
                        prepared.label,
                        intended=intended,
                        sent_at=sent_at,
                        done=time.perf_counter(),
                        status=result.status,
                        body=result.body,
                        amount=prepared.body.get("amount"),
                    )
                    then("answered")
                else:
                    self._spawn(self._after(sim, prepared, intended, sent_at, result), then)
            except Exception as exc:  # a bug: stop the run rather than hang it
                self._fail(exc)

        if not sim.terminal.start(prepared.wire, prepared.body["stan"], done):
            return False
        self.stats.request_sent(prepared.label)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, str], then: Callable[[str], None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)

        def finished(task: asyncio.Task[str]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                return
            try:
                then(task.result())
            except Exception as exc:
                self._fail(exc)

        task.add_done_callback(finished)

    def _fail(self, exc: Exception) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(exc)

    def _pick_type(self) -> str:
        return self._rng.choices(self._types, self._weights)[0]

    def _make(self, sim: LoadTerminal) -> Prepared:
        """A request of a type drawn from the mix, for a card drawn from the world."""
        txn_type = self._pick_type()
        stan = sim.next_stan()
        card = self._rng.choice(self._cards)
        fields: dict[str, Any] = {"pan": card["pan"], "stan": stan}
        if txn_type in PIN_TYPES:
            # One format-4 block per terminal and card, reused: enciphering afresh for
            # every request costs the load generator CPU that the gateway then lacks on a
            # shared machine, and the gateway treats every block alike.
            config = sim.terminal.config
            cache_key = (config.terminal_id, card["pan"])
            block = self._pin_blocks.get(cache_key)
            if block is None:
                block = pin_block(config.pin_key, card["pin"], card["pan"])
                self._pin_blocks[cache_key] = block
            fields["pin_block"] = block
        if txn_type != "balance_inquiry":
            fields["amount"] = self.config.amount_fen
        label = txn_type
        if txn_type == "purchase" and self._rng.random() < self.config.itemised_share:
            # 1 to 3 catalogue lines of `amount` each: counted apart, to compare with plain.
            label = "purchase_itemised"
            codes = self._rng.sample(self._codes, min(len(self._codes), self._rng.randint(1, 3)))
            fields["items"] = [
                {"code": code, "quantity": 1, "unit_price": self.config.amount_fen}
                for code in codes
            ]
            fields["amount"] = self.config.amount_fen * len(codes)
        body = sim.terminal.transaction_body(txn_type, **fields)
        return Prepared(txn_type, label, body, sim.terminal.wire(body))

    async def _send(self, sim: LoadTerminal, prepared: Prepared, intended: float) -> str:
        """Send one request, awaited; count its outcome and return its kind."""
        self.stats.request_sent(prepared.label)
        sent_at = time.perf_counter()
        try:
            result: Answer | BaseException = await sim.terminal.send_wire(
                prepared.wire, prepared.body["stan"]
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            result = exc
        return await self._after(sim, prepared, intended, sent_at, result)

    async def _after(
        self,
        sim: LoadTerminal,
        prepared: Prepared,
        intended: float,
        sent_at: float,
        result: Answer | BaseException,
    ) -> str:
        """Count the outcome of a request sent at `sent_at`, whose answer or error is
        `result`: resent under the next STAN after a 94, reversed when its answer is lost."""
        txn_type, label, body = prepared.txn_type, prepared.label, prepared.body
        try:
            for attempt in range(1, STAN_COLLISION_RETRIES + 1):
                if isinstance(result, BaseException):
                    raise result
                if not _is_94(result) or attempt == STAN_COLLISION_RETRIES:
                    break
                # 94: this STAN was already used today by an earlier run on the same
                # terminal (a simulator keeps no STAN counter between runs). Counted, and
                # sent again under a STAN from elsewhere in the slice (the ones right after
                # a used STAN were most likely used by that run too), as a terminal would
                # after resyncing.
                self.stats.stan_collisions += 1
                sim.terminal.stans.jump()
                body = {**body, "stan": sim.next_stan()}
                sent_at = time.perf_counter()
                result = await sim.terminal.send_wire(sim.terminal.wire(body), body["stan"])
        except StanSpaceExhausted:
            self.stats.error(label, "stan_exhausted")
            return "exhausted"
        except TimeoutError:
            self.stats.error(label, "timeout")
            self._reverse_later(sim, txn_type, body)
            return "timeout"
        except (aiohttp.ServerDisconnectedError, IsoConnectionLost):
            # The request may have been processed: its answer is lost, as on a timeout.
            self.stats.error(label, "connection")
            self._reverse_later(sim, txn_type, body)
            return "connection"
        except (aiohttp.ClientError, OSError):
            self.stats.error(label, "connection")
            return "connection"
        assert isinstance(result, Answer)
        self.stats.answer(
            label,
            intended=intended,
            sent_at=sent_at,
            done=time.perf_counter(),
            status=result.status,
            body=result.body,
            amount=body.get("amount"),
        )
        return "answered"

    def _reverse_later(self, sim: LoadTerminal, txn_type: str, original: dict[str, Any]) -> None:
        if txn_type not in REVERSIBLE:
            return
        task = asyncio.create_task(self._reverse(sim, original))
        self._reversals.add(task)
        task.add_done_callback(self._reversals.discard)

    async def _reverse(self, sim: LoadTerminal, original: dict[str, Any]) -> None:
        try:
            stan = sim.next_stan()
        except StanSpaceExhausted:
            self.stats.reversal_errors["stan_exhausted"] += 1
            return
        body = sim.terminal.transaction_body(
            "reversal",
            stan=stan,
            original_stan=original["stan"],
            pan=original.get("pan"),
            amount=original.get("amount"),
        )
        payload = encode_body(body)
        self.stats.reversals += 1
        kind = "timeout"
        # The same bytes each time: a retransmission gets the stored answer, never a
        # second reversal.
        for _ in range(REVERSAL_ATTEMPTS):
            self.stats.reversal_attempts += 1
            try:
                answer: Answer = await sim.terminal.send(TRANSACTIONS_PATH, payload)
            except TimeoutError:
                kind = "timeout"
                continue
            except (aiohttp.ClientError, OSError):
                kind = "connection"
                await asyncio.sleep(CONNECTION_BACKOFF_S)
                continue
            code = answer.response_code
            if answer.status == 200 and isinstance(code, str):
                self.stats.reversal_codes[code] += 1
            else:
                self.stats.reversal_errors[f"http_{answer.status}"] += 1
            return
        self.stats.reversal_errors[kind] += 1


async def run_load(
    config: LoadConfig,
    world: DemoWorld,
    *,
    progress: bool = False,
    before_run: Callable[[], None] | None = None,
    after_run: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the load test and return its report (see terminal_sim.report.build_report).

    `before_run` is called when the requests prepared ahead are made, just before the
    first is sent; `after_run` when the last answer is in, before the report is built (the
    bench samples CPU times at both, so that only the run is counted as load)."""
    stats = LoadStats()
    connector = aiohttp.TCPConnector(limit=0)  # a connection per request in flight, as terminals
    # aiohttp rounds timeouts of 5 s and more up to a whole second of loop time unless
    # told otherwise; a terminal's timeout is meant as given.
    timeout = aiohttp.ClientTimeout(total=config.timeout_s, ceil_threshold=MAX_DURATION_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        run = LoadRun(config, world, session, stats)
        run.prepare(config.prepare_ahead)
        if before_run is not None:
            before_run()
        display = Progress(stats, config.duration_s) if progress else None
        ticker = None
        if display is not None:
            display.start()
            ticker = asyncio.create_task(_tick(display))
        try:
            elapsed = await run.run()
            if after_run is not None:
                after_run()
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            if display is not None:
                display.stop()
    report = build_report(stats, settings=config.settings(), elapsed_s=elapsed)
    report["prepared_ahead"] = config.prepare_ahead
    report["made_during_run"] = run.made_during_run
    return report


async def _tick(display: Progress) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        display.refresh()
