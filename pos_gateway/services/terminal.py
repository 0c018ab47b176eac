"""The terminal front door, the same for every transport (JSON over HTTP, ISO 8583).

A transport decodes its request, says who claims to send it and how to check its MAC,
and gets back an outcome to encode: authenticate, read the context, call the use case,
map database-down, overload and a passed deadline (POS_REQUEST_DEADLINE_S) to 91 and
failures to 96, count, write the one log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import structlog

from pos_gateway.domain.decisions import Code, MerchantStanding
from pos_gateway.errors import DomainError
from pos_gateway.metrics import Metrics
from pos_gateway.security.keys import KeyUnwrapError, KeyWrapper
from pos_gateway.services.batches import close_batch
from pos_gateway.services.deadline import DeadlineExceeded, within_deadline
from pos_gateway.services.transactions import (
    Overloaded,
    Terminal,
    TransactionRequest,
    TransactionService,
    unrecorded_answer,
)
from pos_gateway.store import terminals
from pos_gateway.store.database import database_unavailable
from pos_gateway.store.transactions import RequestKey, load_context

log = structlog.get_logger("pos_gateway.terminal")
_NO_KEY = bytes(32)  # for the dummy MAC check of an unknown terminal


@dataclass(frozen=True, slots=True)
class TerminalAuth:
    """Who claims to send a request, and how to check that claim."""

    terminal_id: str
    verify_mac: Callable[[bytes], bool]  # given the terminal's 32-byte mac_key
    transport: str  # "http" | "iso8583"


@dataclass(frozen=True, slots=True)
class TerminalOutcome:
    status: Literal["answer", "unauthenticated", "disabled", "malformed"]
    answer: dict[str, Any] | None = None
    error: Exception | None = None
    # Set once the request's MAC was verified: the transport MACs its answer with it.
    mac_key: bytes | None = field(default=None, repr=False)


_UNAUTHENTICATED = TerminalOutcome("unauthenticated")


@dataclass(frozen=True, slots=True)
class _Keyed:
    terminal: Terminal
    mac_key: bytes = field(repr=False)


class TerminalFrontDoor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        key_wrapper: KeyWrapper,
        transactions: TransactionService,
        metrics: Metrics,
        deadline_s: float,
    ) -> None:
        self._pool = pool
        self._keys = key_wrapper
        self._transactions = transactions
        self._metrics = metrics
        self._deadline_s = deadline_s

    def _verify(self, auth: TerminalAuth, row: Any) -> TerminalOutcome | _Keyed:
        """The MAC under the key of `row` (the terminal as loaded, or None): the verified
        terminal, or the outcome of a request that goes no further."""
        if row is None:
            # Same work and same answer as a bad MAC: no probing for terminal ids.
            auth.verify_mac(_NO_KEY)
            return _UNAUTHENTICATED
        try:
            mac_key = self._keys.unwrap(row["mac_key_wrapped"], auth.terminal_id, "mac")
            pin_key = self._keys.unwrap(row["pin_key_wrapped"], auth.terminal_id, "pin")
        except KeyUnwrapError:
            log.error("terminal_key_unwrap_failed")
            return _UNAUTHENTICATED
        if not auth.verify_mac(mac_key):
            return _UNAUTHENTICATED
        if row["status"] != "active":
            return TerminalOutcome("disabled", mac_key=mac_key)
        terminal = Terminal(
            terminal_id=auth.terminal_id,
            merchant_id=row["merchant_id"],
            merchant=MerchantStanding(
                designated_from=row["designated_from"],
                designated_until=row["designated_until"],
                suspended=row["suspended"],
            ),
            pin_key=pin_key,
        )
        return _Keyed(terminal, mac_key)

    async def _authenticate(self, auth: TerminalAuth) -> TerminalOutcome | _Keyed:
        structlog.contextvars.bind_contextvars(terminal_id=auth.terminal_id)
        return self._verify(auth, await terminals.load_for_auth(self._pool, auth.terminal_id))

    async def transaction(
        self,
        auth: TerminalAuth,
        request: TransactionRequest | None,
        malformed: Exception | None,
    ) -> TerminalOutcome:
        """Authenticate, then decide and record `request` (or report `malformed`), all
        within the deadline."""
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(terminal_id=auth.terminal_id)
        txn_type, stan, pan = "unknown", None, None
        if request is not None:
            # Bound before the work starts, so its log lines carry them too (the work runs
            # as a task of its own). A refused request answers no business fields.
            txn_type, stan, pan = request.txn_type, request.stan, request.pan
            structlog.contextvars.bind_contextvars(stan=stan, type=txn_type)
        verified: list[bytes] = []  # the MAC key, once the work has verified the MAC
        try:
            decided = await within_deadline(
                self._decide(auth, request, malformed, verified), self._deadline_s
            )
            if isinstance(decided, TerminalOutcome):
                return decided
            answer = decided
        except DeadlineExceeded:
            # The work is cancelled behind this answer: rolled back, or committed whole and
            # then found by the retransmission. The terminal hears in time either way.
            log.warning("request_deadline_exceeded")
            self._metrics.deadline_exceeded.inc()
            answer = unrecorded_answer(Code.ISSUER_UNAVAILABLE, stan or "")
        except Overloaded:
            answer = unrecorded_answer(Code.ISSUER_UNAVAILABLE, stan or "")
        except DomainError:
            raise
        except Exception as exc:
            if database_unavailable(exc):
                # Answer fast: the terminal retries or reverses; hanging helps nobody.
                log.error("database_unavailable", error=type(exc).__name__)
                answer = unrecorded_answer(Code.ISSUER_UNAVAILABLE, stan or "")
            else:
                # Each write is one statement, so nothing is half-done; the terminal reverses.
                log.exception("transaction_failed")
                answer = unrecorded_answer(Code.SYSTEM_MALFUNCTION, stan or "")
        code = answer["response_code"]
        self._metrics.transactions.labels(txn_type, code).inc()
        self._metrics.latency.labels(txn_type).observe(time.perf_counter() - started)
        log.info(
            "transaction",
            response_code=code,
            amount=answer.get("amount"),
            balance=answer.get("balance"),
            rrn=answer.get("rrn"),
            pan=pan,
            transport=auth.transport,
        )
        return TerminalOutcome("answer", answer=answer, mac_key=verified[0] if verified else None)

    async def _decide(
        self,
        auth: TerminalAuth,
        request: TransactionRequest | None,
        malformed: Exception | None,
        verified: list[bytes],
    ) -> TerminalOutcome | dict[str, Any]:
        """The database part of a transaction request, run under the deadline."""
        # One read for terminal, stored answer and card; nothing is decided on it before
        # the MAC is verified, and a malformed request is reported only after that.
        context = await load_context(
            self._pool,
            auth.terminal_id,
            RequestKey(auth.terminal_id, request.local_date, request.stan) if request else None,
            request.pan if request else None,
        )
        keyed = self._verify(auth, context.terminal if context else None)
        if isinstance(keyed, TerminalOutcome):
            return keyed
        verified.append(keyed.mac_key)
        if request is None:
            return TerminalOutcome("malformed", error=malformed, mac_key=keyed.mac_key)
        return await self._transactions.process(keyed.terminal, request, context)

    async def close_batch(
        self, auth: TerminalAuth, batch_no: int, figures: dict[str, Any], digest: bytes
    ) -> TerminalOutcome:
        """Reconcile the terminal's totals with the gateway's and open the next batch; a
        batch that is not open or was closed with other figures is a refusal (`malformed`,
        with the Conflict as its error). Past the deadline: DeadlineExceeded, which is
        "database unavailable" to the transport (503 / 91)."""
        return await within_deadline(
            self._close_batch(auth, batch_no, figures, digest), self._deadline_s
        )

    async def _close_batch(
        self, auth: TerminalAuth, batch_no: int, figures: dict[str, Any], digest: bytes
    ) -> TerminalOutcome:
        keyed = await self._authenticate(auth)
        if isinstance(keyed, TerminalOutcome):
            return keyed
        try:
            answer = await close_batch(self._pool, auth.terminal_id, batch_no, figures, digest)
        except DomainError as exc:
            return TerminalOutcome("malformed", error=exc, mac_key=keyed.mac_key)
        log.info(
            "batch_closed", batch_no=batch_no, in_balance=answer["in_balance"],
            transport=auth.transport,
        )  # fmt: skip
        return TerminalOutcome("answer", answer=answer, mac_key=keyed.mac_key)

    async def open_batch(self, auth: TerminalAuth) -> TerminalOutcome:
        """{"batch_no": n}: the batch a close must name (within the deadline, as above)."""
        return await within_deadline(self._open_batch(auth), self._deadline_s)

    async def _open_batch(self, auth: TerminalAuth) -> TerminalOutcome:
        keyed = await self._authenticate(auth)
        if isinstance(keyed, TerminalOutcome):
            return keyed
        batch_no = await terminals.open_batch(self._pool, auth.terminal_id)
        return TerminalOutcome("answer", answer={"batch_no": batch_no}, mac_key=keyed.mac_key)
