"""Group commit: many good-PIN requests, one round trip and one commit.

One commit per purchase caps throughput at the database's commit rate. Here requests
whose PIN was verified wait in a queue; a flusher takes everything queued (up to
`max_batch`) and records it with store.transactions.record_good_pin_batch. No timer
holds requests back: while one batch commits the next one fills, so under light load a
batch is a single request and under heavy load batches grow by themselves. Every
request is answered only after the commit that holds its own debit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
import structlog

from pos_gateway.domain.decisions import MAX_PIN_FAILURES, AfterPin, decide_after_pin
from pos_gateway.store import transactions as store
from pos_gateway.store.transactions import DuplicateKey, GoodPinRequest, StoredAnswer

log = structlog.get_logger("pos_gateway.group_commit")
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class NotWritten(ConnectionError):
    """The gateway is stopping and this request was certainly not written (refused, or
    still queued when the committer closed): its caller gives back the PIN try it took,
    as for any write that store.transactions.nothing_written says did not commit."""


async def give_back_try(pool: asyncpg.Pool, card_id: int) -> None:
    """Give back a PIN try whose right PIN was certainly not recorded (no write will reset
    the count), so errors, deadlines and shutdowns never lock a card. A database that
    fails this too keeps the try: logged, never raised over the request's own error."""
    try:
        await store.release_pin_try(pool, card_id)
    except Exception as exc:
        log.warning("pin_try_not_released", error=type(exc).__name__)


class _Background:
    """Tasks a request leaves behind when it is gone (a PIN try given back), kept so that
    close() can wait for them, or cancel them, before the pool closes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class UncertainTries:
    """Right PINs whose write may or may not have committed (the connection was lost): the
    answer was 91, and the try each counted is given back once the database answers and
    the request's key is found unrecorded. A write that did commit reset the count itself;
    one still running when the key is read resets it when it commits, so a try given
    back early costs nothing. Without this, three lost connections on one card lock out
    its holder, whose PIN was right each time."""

    def __init__(self, pool: asyncpg.Pool, give_up_after_s: float = 60.0) -> None:
        self._pool = pool
        self._give_up_after_s = give_up_after_s
        self._resolving = _Background()

    def resolve(self, card_id: int, key: store.RequestKey) -> None:
        self._resolving.spawn(self._resolve(card_id, key))

    async def _resolve(self, card_id: int, key: store.RequestKey) -> None:
        deadline = time.monotonic() + self._give_up_after_s
        while True:
            try:
                if await store.find(self._pool, key) is None:
                    await store.release_pin_try(self._pool, card_id)
                return
            except Exception as exc:
                if time.monotonic() >= deadline:
                    # Kept: the safe side (a try too many, never one too few).
                    log.warning("pin_try_left_uncertain", error=type(exc).__name__)
                    return
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        """Stop waiting for the database: tries not yet resolved stay counted."""
        await self._resolving.cancel()


def decide_good_pin(
    request: GoodPinRequest, card: Any, balance: int, pin_failures: int
) -> AfterPin:
    """domain.decisions.decide_after_pin on a locked card row and the running balance and
    PIN-failure count: what store.transactions.record_good_pin(_batch) decides with."""
    return decide_after_pin(
        txn_type=request.txn_type,
        amount=request.amount,
        card_status=card["status"],
        pin_failures=pin_failures,
        pin_try=request.pin_try,
        account_status=card["account_status"],
        balance=balance,
    )


@dataclass
class _Pending:
    request: GoodPinRequest
    futures: list[asyncio.Future[StoredAnswer]] = field(default_factory=list)

    def settle(self, answer: StoredAnswer | None, error: BaseException | None = None) -> None:
        """Give every waiter (the request and its in-batch copies) the outcome once."""
        for future in self.futures:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            elif answer is not None:
                future.set_result(answer)


class GroupCommitter:
    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 256, flushers: int = 1) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._queue: dict[store.RequestKey, _Pending] = {}
        self._wakeup = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run()) for _ in range(flushers)]
        # Every caller still waiting, queued or in a batch being written: close() answers
        # them all, so none hangs when the gateway stops.
        self._waiting: set[asyncio.Future[StoredAnswer]] = set()
        self._closed = False
        self._releasing = _Background()  # tries of cancelled requests
        self.batches = 0
        self.requests = 0

    async def submit(self, request: GoodPinRequest) -> StoredAnswer:
        """Queue the request; return its stored answer once it is committed. Raises
        DuplicateKey when another request took its key first."""
        if self._closed:
            raise NotWritten("gateway shutting down")
        future: asyncio.Future[StoredAnswer] = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)
        # Two copies of one request in the same batch would collide on the key: the copy
        # waits for the first's outcome (and the caller compares the request hashes).
        pending = self._queue.setdefault(request.key, _Pending(request))
        pending.futures.append(future)
        self._wakeup.set()
        try:
            return await future
        except asyncio.CancelledError:
            # Past its deadline (answered 91): a request no flusher has taken yet is
            # dropped, so it is never written after its terminal was told otherwise.
            pending.futures.remove(future)
            if not pending.futures and self._queue.get(request.key) is pending:
                del self._queue[request.key]
                if request.pin_try:
                    # Its PIN was right and no write will forgive the try it counted:
                    # given back, so answers of 91 in a slow spell never lock a card. The
                    # caller is cancelled and cannot wait for it: close() does.
                    self._releasing.spawn(give_back_try(self._pool, request.card_id))
            raise

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                keys = list(self._queue)[: self._max_batch]
                batch = [self._queue.pop(k) for k in keys]
                if self._queue:
                    self._wakeup.set()  # let another flusher start on the rest
                await self._flush(batch)

    async def _flush(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            # Alone (light load, or the PIN hash is the bottleneck): one statement is one
            # round trip, where a batch transaction takes four.
            if await self._one_by_one(batch[0]):
                self.batches += 1
                self.requests += 1
            return
        requests = [p.request for p in batch]
        try:
            async with self._pool.acquire() as conn:
                answers = await store.record_good_pin_batch(conn, requests, decide_good_pin)
        except DuplicateKey:
            # Rare (a retransmission racing its original in another batch or process):
            # record one by one, each transaction sorting out its own key.
            await asyncio.gather(*(self._one_by_one(p) for p in batch))
            return
        except Exception as exc:
            # Each caller hears the error and gives back its own try if nothing was written
            # (services.transactions: the same for every write path).
            for pending in batch:
                pending.settle(None, exc)
            return
        self.batches += 1
        self.requests += len(batch)
        for pending, answer in zip(batch, answers, strict=True):
            pending.settle(answer)

    async def _one_by_one(self, pending: _Pending) -> bool:
        """Record one request alone (store.record_good_pin); False when it failed (its waiters
        then have the exception, DuplicateKey included: the caller re-reads the key)."""
        try:
            answer = await store.record_good_pin(self._pool, pending.request, decide_good_pin)
        except Exception as exc:
            pending.settle(None, exc)
            return False
        pending.settle(answer)
        return True

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Still queued, never taken by a flusher: certainly not written, and their callers
        # give their tries back. (A batch cancelled just as its COMMIT went out may be
        # recorded: its callers hear only that the gateway stopped, and their tries stay.)
        for pending in self._queue.values():
            pending.settle(None, NotWritten("gateway shutting down"))
        self._queue.clear()
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(ConnectionError("gateway shutting down"))
        # The tries of cancelled requests being given back: done before the pool closes.
        await self._releasing.wait()


@dataclass
class _Waiting(Generic[Item, Outcome]):
    item: Item
    future: asyncio.Future[Outcome]


class _Batcher(Generic[Item, Outcome]):
    """The statement of every caller waiting at once, sent as one (`_fetch`), as the
    committer above does for writes: no timer, a batch is whatever queued while the last
    one ran, so under light load it is one request and under heavy load it grows."""

    def __init__(self, max_batch: int) -> None:
        self._max_batch = max_batch
        self._queue: list[_Waiting[Item, Outcome]] = []
        self._in_flight: list[_Waiting[Item, Outcome]] = []
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run())
        self._closed = False
        self.batches = 0
        self.items = 0

    async def _submit(self, item: Item) -> Outcome:
        if self._closed:
            raise ConnectionError("gateway shutting down")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(item, future))
        self._wakeup.set()
        # A caller cancelled (past its deadline) cancels its future: still queued, its
        # item is never sent; already sent, its outcome goes to _abandoned.
        return await future

    async def _fetch(self, items: list[Item]) -> list[Outcome | Exception]:
        raise NotImplementedError

    def _fits(self, item: Item, batch: list[Item]) -> bool:
        return True

    def _abandoned(self, item: Item, outcome: Outcome | Exception) -> None:
        """The outcome of an item whose caller gave up while it was being sent."""

    def _next_batch(self) -> list[_Waiting[Item, Outcome]]:
        batch: list[_Waiting[Item, Outcome]] = []
        rest: list[_Waiting[Item, Outcome]] = []
        for waiting in self._queue:
            if waiting.future.done():
                continue  # cancelled while queued: nothing sent
            if len(batch) < self._max_batch and self._fits(waiting.item, [w.item for w in batch]):
                batch.append(waiting)
            else:
                rest.append(waiting)
        self._queue = rest
        return batch

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while batch := self._next_batch():
                self._in_flight = batch
                await self._flush(batch)
                self._in_flight = []

    async def _flush(self, batch: list[_Waiting[Item, Outcome]]) -> None:
        try:
            outcomes = await self._fetch([w.item for w in batch])
            if len(outcomes) != len(batch):  # never expected; the flusher must live on
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except Exception as exc:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.future.done():
                self._abandoned(waiting.item, outcome)
            elif isinstance(outcome, Exception):
                waiting.future.set_exception(outcome)
            else:
                waiting.future.set_result(outcome)

    async def close(self) -> None:
        """Stop: callers still queued or in a batch cut off hear that the gateway stops."""
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for waiting in [*self._in_flight, *self._queue]:
            if not waiting.future.done():
                waiting.future.set_exception(ConnectionError("gateway shutting down"))
        self._queue.clear()


_ClaimItem = tuple[int, store.RequestKey]  # card_id, the request's key


class PinTryClaims(_Batcher[_ClaimItem, store.PinTry | None]):
    """PIN tries of every claim waiting at once counted in one statement
    (store.transactions.claim_pin_tries). A claim still resolves before its hash starts,
    so tries from every process add up as before. One claim per card in a batch (the
    service's per-card lock makes a second one rare; it waits for the next batch)."""

    def __init__(
        self, pool: asyncpg.Pool, *, max_failures: int = MAX_PIN_FAILURES, max_batch: int = 256
    ) -> None:
        super().__init__(max_batch)
        self._pool = pool
        self._max_failures = max_failures
        self._releasing = _Background()  # tries of cancelled claims

    async def claim(self, card_id: int, key: store.RequestKey) -> store.PinTry | None:
        """store.transactions.claim_pin_try, batched: the try counted (the count it took
        the card to, and the card as it is), or None when it has no try left; DuplicateKey
        when the key is taken."""
        return await self._submit((card_id, key))

    def _fits(self, item: _ClaimItem, batch: list[_ClaimItem]) -> bool:
        return all(card_id != item[0] for card_id, _ in batch)

    async def _fetch(self, items: list[_ClaimItem]) -> list[store.PinTry | Exception | None]:
        if len(items) > 1:
            return list(await store.claim_pin_tries(self._pool, items, self._max_failures))
        # Alone (light load): the one-claim statement is the cheaper one.
        card_id, key = items[0]
        try:
            return [await store.claim_pin_try(self._pool, card_id, key, self._max_failures)]
        except DuplicateKey as exc:
            return [exc]

    def _abandoned(self, item: _ClaimItem, outcome: store.PinTry | Exception | None) -> None:
        if isinstance(outcome, store.PinTry):
            # Its caller gave up (91) while the try was being counted: no answer will ever
            # reset it, so it goes back; close() waits for that.
            self._releasing.spawn(give_back_try(self._pool, item[0]))

    async def close(self) -> None:
        """A batch cut off mid-statement may have counted its tries: they stay."""
        await super().close()
        await self._releasing.wait()


_ContextItem = tuple[str, store.RequestKey | None, str | None]  # terminal_id, key, PAN


class ContextReads(_Batcher[_ContextItem, store.RequestContext | None]):
    """store.transactions.load_context of every request waiting at once, in one query."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 256) -> None:
        super().__init__(max_batch)
        self._pool = pool

    async def load(
        self, terminal_id: str, key: store.RequestKey | None, pan: str | None
    ) -> store.RequestContext | None:
        return await self._submit((terminal_id, key, pan))

    async def _fetch(
        self, items: list[_ContextItem]
    ) -> list[store.RequestContext | Exception | None]:
        if len(items) == 1:
            return [await store.load_context(self._pool, *items[0])]
        return list(await store.load_contexts(self._pool, items))
