"""The terminal's financial requests: purchase, balance inquiry and the refused kinds."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from pos_gateway.domain.cards import luhn_valid
from pos_gateway.domain.coverage import coverage_on
from pos_gateway.domain.decisions import (
    MAX_PIN_FAILURES,
    MESSAGES,
    PIN_TYPES,
    CardStanding,
    Code,
    MerchantStanding,
    decide_before_pin,
    decide_refund,
    decide_wrong_pin,
)
from pos_gateway.domain.split import Line, Settlement, Split, decide_settlement, items_decline
from pos_gateway.metrics import Metrics
from pos_gateway.security.pins import PinBlockError, PinHasher, decipher_pin_block
from pos_gateway.services.group_commit import (
    GroupCommitter,
    NotWritten,
    PinTryClaims,
    UncertainTries,
    decide_good_pin,
    give_back_try,
)
from pos_gateway.store import people, settlement
from pos_gateway.store import transactions as store
from pos_gateway.store.database import database_unavailable
from pos_gateway.store.transactions import (
    BLOCKED,
    UNKNOWN_IDENTITY,
    DuplicateKey,
    GoodPinRequest,
    PinTry,
    RequestContext,
    RequestKey,
    StoredAnswer,
)

log = structlog.get_logger("pos_gateway.transactions")
LIMITS_CACHE_S = 5.0


@dataclass(frozen=True, slots=True)
class Terminal:
    """A terminal whose request signature has been verified."""

    terminal_id: str
    merchant_id: str
    merchant: MerchantStanding
    pin_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class TransactionRequest:
    """A validated terminal request (see http/validation.py)."""

    txn_type: str
    stan: str
    local_date: date
    pan: str | None
    pin_block: bytes | None = field(repr=False)
    amount: int | None
    content_hash: bytes  # domain.identity.request_identity: replay vs. 94
    original_rrn: str | None = None  # refund
    original_stan: str | None = None  # reversal
    original_local_date: date | None = None  # reversal, when the terminal sends it
    items: tuple[tuple[str, int, int], ...] | None = None  # itemised: (code, quantity, price)
    account_max: int | None = None  # itemised: the most the individual account pays


# What every record of a request starts with: its key, content hash, type and merchant.
_Common = tuple[RequestKey, bytes, str, str]


class Overloaded(Exception):
    """Too many PIN verifications waiting: the request is refused before any decision."""


def _auth_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def decide_itemised(
    request: settlement.ItemisedRequest, state: settlement.ItemisedState
) -> Settlement:
    """domain.split.decide_settlement (which decides the card's standing, PIN count and daily
    limits with decide_after_pin) on what store.settlement.record_itemised read and locked."""
    items = request.items
    return decide_settlement(
        txn_type=request.txn_type,
        lines=None
        if items is None
        else [Line(state.catalogue[code], qty, price) for code, qty, price in items],
        amount=request.amount,
        covered=coverage_on(request.business_date, state.paid_months, state.suspensions).covered,
        policy=state.policy,
        used=state.used,
        card_status=state.card_status,
        pin_failures=state.pin_failures,
        pin_try=request.pin_try,
        account_status=state.account_status,
        balance=state.balance,
        account_max=request.account_max,
        daily=state.daily,
    )


def render(answer: StoredAnswer, split: Split | None = None) -> dict[str, Any]:
    """The business answer, built only from the stored row (and the stored split of an
    itemised request) so a replay is identical."""
    out: dict[str, Any] = {
        "response_code": answer.response_code,
        "approved": answer.response_code == Code.APPROVED,
        "message": MESSAGES[answer.response_code],
        "stan": answer.stan,
        "rrn": answer.rrn,
    }
    if answer.auth_code is not None:
        out["auth_code"] = answer.auth_code
    if answer.amount is not None:
        # An itemised purchase's row holds the account part; the answer names the total.
        out["amount"] = split.total if split is not None else answer.amount
    if answer.balance is not None:
        out["balance"] = answer.balance
    out["transaction_id"] = str(answer.transaction_id)
    if split is not None:
        out["split"] = split.as_json()
    return out


def unrecorded_answer(code: Code, stan: str) -> dict[str, Any]:
    """An answer with no transaction behind it (91, 94, 96)."""
    return {"response_code": code.value, "approved": False, "message": MESSAGES[code], "stan": stan}


class TransactionService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        pin_hasher: PinHasher,
        pin_executor: Executor,
        metrics: Metrics,
        today: Callable[[], date],
        max_amount_fen: int,
        group_commit: GroupCommitter | None = None,
        pin_queue_max: int = 100,
        pin_claims: PinTryClaims | None = None,
    ) -> None:
        self._pool = pool
        self._pins = pin_hasher
        self._pin_executor = pin_executor
        self._metrics = metrics
        self._today = today
        self._max_amount = max_amount_fen
        self._group_commit = group_commit
        self._pin_queue_max = pin_queue_max
        self._pin_claims = pin_claims
        self._pin_pending = 0
        # A lock per card with a request in progress; entries go when no one holds them.
        self._card_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._limits_cache: dict[tuple[str, int], tuple[float, bool]] = {}
        self._fresh_splits: dict[UUID, Split] = {}  # from the record to the answer
        self._uncertain = UncertainTries(pool)

    async def close(self) -> None:
        """At shutdown, before the pool closes: stop resolving uncertain PIN tries."""
        await self._uncertain.close()

    async def process(
        self,
        terminal: Terminal,
        request: TransactionRequest,
        context: RequestContext | None = None,
    ) -> dict[str, Any]:
        """Decide, record and answer one request; a retransmission gets the stored answer.
        `context`, when given, is what store.transactions.load_context read for it."""
        key = RequestKey(terminal.terminal_id, request.local_date, request.stan)
        stored = context.stored if context else await store.find(self._pool, key)
        if stored is None:
            try:
                stored = await self._decide_and_record(terminal, request, key, context)
            except DuplicateKey:
                stored = await store.find(self._pool, key)
                assert stored is not None  # the key's holder has committed
        if stored.txn_type == BLOCKED:
            # A reversal arrived first and took this request's key: declined, nothing moves.
            return render(stored)
        if stored.request_hash == UNKNOWN_IDENTITY:
            # Recorded before identities were kept (schema/004): the key decides alone.
            return render(stored)
        if stored.request_hash != request.content_hash:
            return unrecorded_answer(Code.DUPLICATE, request.stan)
        if request.items is not None and stored.response_code == Code.APPROVED:
            # Just decided here, or stored by an earlier transmission of the same request.
            split = self._fresh_splits.pop(stored.transaction_id, None)
            if split is None:
                split = await settlement.split_of(self._pool, stored.transaction_id)
            return render(stored, split)
        return render(stored)

    async def _decide_and_record(
        self,
        terminal: Terminal,
        request: TransactionRequest,
        key: RequestKey,
        context: RequestContext | None,
    ) -> StoredAnswer:
        common = (key, request.content_hash, request.txn_type, terminal.merchant_id)
        if request.txn_type == "reversal":
            assert request.original_stan is not None
            if request.original_stan == request.stan:
                return await store.record_decline(
                    self._pool, *common, None, None, None, Code.INVALID_TRANSACTION.value
                )
            dates = (
                [request.original_local_date]
                if request.original_local_date is not None
                else [request.local_date, request.local_date - timedelta(days=1)]
            )
            return await store.record_reversal(
                self._pool, *common, request.original_stan, _auth_code(), dates
            )
        if request.txn_type == "refund":
            assert request.original_rrn is not None and request.amount is not None
            decline = decide_refund(
                amount=request.amount,
                max_amount=self._max_amount,
                merchant=terminal.merchant,
                today=self._today(),
            )
            if decline is not None:
                return await store.record_decline(
                    self._pool, *common, None, None, request.amount, decline.value
                )
            if await settlement.itemised_original(self._pool, request.original_rrn):
                # Whole or nothing, with the fund share and accumulators given back.
                return await settlement.record_itemised_refund(
                    self._pool, common[0], request.content_hash, terminal.merchant_id,
                    request.original_rrn, request.amount, _auth_code(), request.pan,
                )  # fmt: skip
            return await store.record_refund(
                self._pool,
                *common,
                request.original_rrn,
                request.amount,
                _auth_code(),
                request.pan,
            )
        return await self._card_request(terminal, request, common, context)

    async def _card_request(
        self,
        terminal: Terminal,
        request: TransactionRequest,
        common: _Common,
        context: RequestContext | None,
    ) -> StoredAnswer:
        """Purchase, balance inquiry and the refused kinds: decided on the card and PIN."""
        pan = request.pan
        pan_ok = pan is not None and luhn_valid(pan)
        if not pan_ok:
            card = None
        elif context is not None:
            card = context.card
        else:
            assert pan is not None  # pan_ok
            card = await people.get_card(self._pool, pan)
        decline = self._decline_before_pin(terminal, request, card, pan_ok)
        if decline is None and request.items is not None:
            decline = await self._items_decline(request)
        # A settlement trial that carries a PIN is checked (and timed) like any PIN.
        sends_pin = request.txn_type in PIN_TYPES or request.pin_block is not None
        needs_hash = decline is None or (decline == Code.INVALID_CARD and sends_pin)
        with self._pin_check_slot(needs_hash):
            if decline == Code.INVALID_CARD and sends_pin:
                # An unknown card costs one hash like a known one: timing must not tell
                # which card numbers exist.
                await self._verify_pin(None, "0000")
            if decline is not None:
                return await self._record_card_decline(common, card, request, decline)
            assert card is not None and pan is not None
            # PIN checks of one card take turns (in this process): a burst of guesses is
            # counted one by one, so the lock after three wrong PINs holds for the burst too.
            # Another request on this card that went first may have changed its PIN count
            # and balance: the claim of this try reads both as that request left them (and
            # finds a card that it locked without a try left), so no other read is needed.
            lock = self._card_locks.get(card["card_id"])
            if lock is None:
                lock = self._card_locks[card["card_id"]] = asyncio.Lock()
            async with lock:
                return await self._check_pin_and_record(terminal, request, common, card)

    @contextlib.contextmanager
    def _pin_check_slot(self, needed: bool) -> Iterator[None]:
        """A place among the PIN checks waiting (queued behind a card's lock, counting
        the try, or hashing), or Overloaded when `pin_queue_max` are waiting already."""
        if not needed:
            yield
            return
        if self._pin_pending >= self._pin_queue_max:
            # Shed before anything is recorded: the terminal's retry is a fresh request,
            # and PINs queued for seconds would only be answered after it gave up.
            self._metrics.shed.inc()
            raise Overloaded
        self._pin_pending += 1
        try:
            yield
        finally:
            self._pin_pending -= 1

    async def _record_card_decline(
        self, common: _Common, card: Any, request: TransactionRequest, decline: Code
    ) -> StoredAnswer:
        return await store.record_decline(
            self._pool,
            *common,
            card["card_id"] if card else None,
            card["account_id"] if card else None,
            request.amount,
            decline.value,
        )

    def _decline_before_pin(
        self, terminal: Terminal, request: TransactionRequest, card: Any, pan_ok: bool
    ) -> Code | None:
        standing = (
            CardStanding(
                status=card["status"],
                expires_on=card["expires_on"],
                pin_failures=card["pin_failures"],
                account_status=card["account_status"],
            )
            if card is not None
            else None
        )
        return decide_before_pin(
            txn_type=request.txn_type,
            amount=request.amount,
            max_amount=self._max_amount,
            merchant=terminal.merchant,
            card=standing,
            pan_luhn_ok=pan_ok,
            today=self._today(),
        )

    async def _check_pin_and_record(
        self, terminal: Terminal, request: TransactionRequest, common: _Common, card: Any
    ) -> StoredAnswer:
        assert request.pan is not None
        pan = request.pan
        key, request_hash, txn_type, merchant_id = common
        if request.pin_block is None:  # a settlement trial sent without a PIN: no try
            return await self._record_itemised(request, common, card, pin_try=0)
        claimed = await self._claim_pin_try(terminal, request, common, card)
        if isinstance(claimed, StoredAnswer):
            return claimed
        pin_try = claimed.tries
        pin_ok = False
        try:
            pin_ok = await self._pin_matches(terminal, request.pin_block, pan, card["pin_hash"])
            log.debug("pin_checked", pan=pan, ok=pin_ok)
            if not pin_ok:
                # The try is counted already: only the answer is left to record.
                return await store.record_decline(
                    self._pool, *common, card["card_id"], card["account_id"], request.amount,
                    decide_wrong_pin(pin_try).value,
                )  # fmt: skip
            if request.items is not None or (
                request.txn_type == "purchase" and await self._daily_limits_apply(terminal)
            ):
                # Decided by the same decide_after_pin, on the day and the split as well.
                return await self._record_itemised(request, common, card, pin_try=pin_try)
            # Decided first on the card as the claim found it, its try counted; the write
            # checks that under the locks and decides again if anything moved meanwhile.
            good = GoodPinRequest(
                key, request_hash, txn_type, merchant_id, card["card_id"], request.amount,
                _auth_code(), pin_try, claimed.seen(),
            )  # fmt: skip
            if self._group_commit is not None:
                return await self._group_commit.submit(good)
            return await store.record_good_pin(self._pool, good, decide_good_pin)
        except DuplicateKey:
            # A copy of this request (in another process) took the key while this one was
            # checked: the copy's try is the one that counts.
            await store.release_pin_try(self._pool, card["card_id"])
            raise
        except Exception as exc:
            if pin_ok and (store.nothing_written(exc) or isinstance(exc, NotWritten)):
                # A right PIN whose write certainly did not commit: nothing will reset the
                # count, so the try goes back (on every write path: group commit, alone,
                # itemised). A wrong PIN's try stays: that guess was made and checked.
                await give_back_try(self._pool, card["card_id"])
            elif pin_ok and database_unavailable(exc):
                # The connection went with the write: given back later, if it did not
                # commit.
                self._uncertain.resolve(card["card_id"], key)
            raise

    async def _claim_pin_try(
        self, terminal: Terminal, request: TransactionRequest, common: tuple, card: Any
    ) -> PinTry | StoredAnswer:
        """Count this PIN try in the database before the hash, so that tries from every
        process on this database add up (at most MAX_PIN_FAILURES between right PINs).
        Returns the try (the count it took the card to, the card as it is now), or the
        recorded decline of a card that has no try left (locked by tries since it was read,
        here or elsewhere)."""
        key = common[0]
        assert request.pan is not None
        for _ in range(MAX_PIN_FAILURES + 1):
            if self._pin_claims is not None:
                pin_try = await self._pin_claims.claim(card["card_id"], key)
            else:
                pin_try = await store.claim_pin_try(
                    self._pool, card["card_id"], key, MAX_PIN_FAILURES
                )
            if pin_try is not None:
                return pin_try
            card = await people.get_card(self._pool, request.pan)
            decline = self._decline_before_pin(terminal, request, card, True)
            if decline is not None:
                return await self._record_card_decline(common, card, request, decline)
        # The count keeps changing under us (resets racing tries): give up; 96.
        raise RuntimeError("PIN-failure count of the card changing too fast to take a try")

    async def _items_decline(self, request: TransactionRequest) -> Code | None:
        assert request.items is not None and request.amount is not None
        known = await settlement.catalogue_items(self._pool, [c for c, _, _ in request.items])
        return items_decline(request.amount, request.items, known, self._max_amount)

    async def _daily_limits_apply(self, terminal: Terminal) -> bool:
        """Whether the merchant's policy sets daily limits per card this year. Cached a few
        seconds per merchant (a policy load reaches the choice of path within that time):
        asking on every purchase would cost the hot path a round trip."""
        year = self._today().year
        cache_key = (terminal.merchant_id, year)
        cached = self._limits_cache.get(cache_key)
        now = time.monotonic()
        if cached is None or cached[0] < now:
            limited = await settlement.has_daily_limits(self._pool, terminal.merchant_id, year)
            cached = self._limits_cache[cache_key] = (now + LIMITS_CACHE_S, limited)
        return cached[1]

    async def _record_itemised(
        self, request: TransactionRequest, common: tuple, card: Any, *, pin_try: int
    ) -> StoredAnswer:
        """Itemised purchase or settlement trial, or a plain purchase under daily limits:
        their own one-transaction write path (not the group commit), person locked before
        account, the day's purchases of the card counted; see store/settlement.py."""
        assert request.amount is not None
        key, request_hash, txn_type, merchant_id = common
        stored, split = await settlement.record_itemised(
            self._pool,
            settlement.ItemisedRequest(
                key, request_hash, txn_type, merchant_id, card["card_id"], request.amount,
                request.items, request.account_max, _auth_code(), pin_try, self._today(),
            ),
            decide_itemised,
        )  # fmt: skip
        if split is not None:
            self._fresh_splits[stored.transaction_id] = split
        return stored

    async def _pin_matches(
        self, terminal: Terminal, pin_block: bytes, pan: str, pin_hash: str
    ) -> bool:
        try:
            pin = decipher_pin_block(terminal.pin_key, pin_block, pan)
        except PinBlockError:
            # Wrong key or a block bound to another PAN: the cardholder's PIN cannot be
            # known, so it is answered and counted as a wrong PIN.
            log.warning("pin_block_undecipherable", pan=pan)  # masked by the log processor
            return await self._verify_pin(None, "0000")
        return await self._verify_pin(pin_hash, pin)

    async def _verify_pin(self, pin_hash: str | None, pin: str) -> bool:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            if pin_hash is None:
                return await loop.run_in_executor(self._pin_executor, self._pins.dummy_verify, pin)
            return await loop.run_in_executor(self._pin_executor, self._pins.verify, pin_hash, pin)
        finally:
            self._metrics.pin_verify.observe(time.perf_counter() - started)
