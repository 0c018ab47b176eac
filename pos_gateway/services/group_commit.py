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
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from pos_gateway.domain.decisions import AfterPin, decide_after_pin
from pos_gateway.store import transactions as store
from pos_gateway.store.transactions import DuplicateKey, GoodPinRequest, StoredAnswer

log = structlog.get_logger("pos_gateway.group_commit")


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
        self._releasing: set[asyncio.Task[None]] = set()  # tries of cancelled requests
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
                    release = asyncio.create_task(give_back_try(self._pool, request.card_id))
                    self._releasing.add(release)
                    release.add_done_callback(self._releasing.discard)
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
        await asyncio.gather(*self._releasing)
