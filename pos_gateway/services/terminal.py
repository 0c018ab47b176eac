"""The terminal front door: one service for every transport (HTTP JSON, ISO 8583).

A transport decodes its message, says how to check the message's MAC under a key, and
renders what comes back; everything between - terminal lookup, key unwrap, MAC check,
disabled terminal, the context read, the transaction service, 91 for database-down,
overload and a passed deadline (POS_REQUEST_DEADLINE_S), 96 for anything else, the
metrics and the one log line - happens here, the same way for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
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
from pos_gateway.services.group_commit import ContextReads
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
_NO_KEY = bytes(32)  # the dummy MAC check of an unknown terminal costs what a real one does


@dataclass(frozen=True, slots=True)
class TerminalAuth:
    """Who a request says it comes from, and how its transport checks the MAC."""

    terminal_id: str
    # Given the terminal's unwrapped 32-byte mac_key: is the request's MAC good?
    verify_mac: Callable[[bytes], bool]
    transport: str  # "http" | "iso8583"


@dataclass(frozen=True, slots=True)
class TerminalOutcome:
    """What the transport renders. `answer` is the business answer (status "answer");
    `error` the InvalidInput of a malformed request (reported only once authenticated);
    `mac_key` is set once the terminal is authenticated, so the transport can MAC its
    answer (None on a 91 answered before the terminal could be authenticated).
    "unavailable" (batch requests only; a transaction answers 91 instead): the deadline
    passed or the database is gone, `error` says which (503 / 91)."""

    status: Literal["answer", "unauthenticated", "disabled", "malformed", "unavailable"]
    answer: dict[str, Any] | None = None
    error: Exception | None = None
    mac_key: bytes | None = field(default=None, repr=False)


_UNAUTHENTICATED = TerminalOutcome("unauthenticated")


@dataclass(frozen=True, slots=True)
class _Authenticated:
    terminal: Terminal
    mac_key: bytes = field(repr=False)
    active: bool


class TerminalFrontDoor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        key_wrapper: KeyWrapper,
        transactions: TransactionService,
        metrics: Metrics,
        deadline_s: float,
        context_reads: ContextReads | None = None,
    ) -> None:
        self._pool = pool
        self._context_reads = context_reads
        self._keys = key_wrapper
        self._transactions = transactions
        self._metrics = metrics
        self._deadline_s = deadline_s

    async def transaction(
        self,
        auth: TerminalAuth,
        request: TransactionRequest | None,
        malformed: Exception | None,
    ) -> TerminalOutcome:
        """A financial request (or the error that kept it from parsing): authenticate,
        process, answer, all within the deadline. Database trouble, overload and a passed
        deadline are 91, anything unexpected 96."""
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(terminal_id=auth.terminal_id)
        txn_type, stan, pan = "unknown", None, None
        if request is not None:
            # Bound before the work starts, so its log lines carry them too (the work runs
            # as a task of its own). A refused request answers no business fields.
            txn_type, stan, pan = request.txn_type, request.stan, request.pan
            structlog.contextvars.bind_contextvars(stan=stan, type=txn_type)
        checked: list[_Authenticated] = []  # the terminal, once the work authenticated it
        outcome: TerminalOutcome
        try:
            decided = await within_deadline(
                self._decide(auth, request, malformed, checked), self._deadline_s
            )
            if decided.status != "answer":
                return decided
            outcome = decided
        except DeadlineExceeded:
            # The work is cancelled behind this answer: rolled back, or committed whole and
            # then found by the retransmission. The terminal hears in time either way.
            log.warning("request_deadline_exceeded")
            self._metrics.deadline_exceeded.inc()
            outcome = self._unrecorded(Code.ISSUER_UNAVAILABLE, stan, checked)
        except Overloaded:
            outcome = self._unrecorded(Code.ISSUER_UNAVAILABLE, stan, checked)
        except DomainError:
            raise
        except Exception as exc:
            if database_unavailable(exc):
                # Answer fast: the terminal retries or reverses; hanging helps nobody.
                log.error("database_unavailable", error=type(exc).__name__)
                outcome = self._unrecorded(Code.ISSUER_UNAVAILABLE, stan, checked)
            else:
                # Each write is one transaction, so nothing is half-done; the terminal
                # reverses.
                log.exception("transaction_failed")
                outcome = self._unrecorded(Code.SYSTEM_MALFUNCTION, stan, checked)
        assert outcome.answer is not None
        code = outcome.answer["response_code"]
        self._metrics.transactions.labels(auth.transport, txn_type, code).inc()
        self._metrics.latency.labels(auth.transport, txn_type).observe(
            time.perf_counter() - started
        )
        log.info(
            "transaction",
            transport=auth.transport,
            response_code=code,
            amount=outcome.answer.get("amount"),
            balance=outcome.answer.get("balance"),
            rrn=outcome.answer.get("rrn"),
            pan=pan,
        )
        return outcome

    async def _decide(
        self,
        auth: TerminalAuth,
        request: TransactionRequest | None,
        malformed: Exception | None,
        checked: list[_Authenticated],
    ) -> TerminalOutcome:
        """The database part of a transaction request, run under the deadline."""
        # One read for terminal, stored answer and card; nothing is decided on it before
        # the MAC is verified, and a malformed request is reported only then.
        key = RequestKey(auth.terminal_id, request.local_date, request.stan) if request else None
        pan = request.pan if request else None
        if self._context_reads is not None:
            context = await self._context_reads.load(auth.terminal_id, key, pan)
        else:
            context = await load_context(self._pool, auth.terminal_id, key, pan)
        authenticated = self._authenticate(auth, context.terminal if context else None)
        if authenticated is None:
            return _UNAUTHENTICATED
        checked.append(authenticated)
        if not authenticated.active:
            return TerminalOutcome("disabled", mac_key=authenticated.mac_key)
        if request is None:
            return TerminalOutcome("malformed", error=malformed, mac_key=authenticated.mac_key)
        answer = await self._transactions.process(authenticated.terminal, request, context)
        return TerminalOutcome("answer", answer=answer, mac_key=authenticated.mac_key)

    async def close_batch(
        self,
        auth: TerminalAuth,
        batch_no: int,
        figures: dict[str, Any],
        digest: bytes,
        malformed: Exception | None = None,
    ) -> TerminalOutcome:
        """Reconcile the terminal's totals and open its next batch (`malformed`: the close
        did not parse; reported once the terminal is authenticated). A close naming another
        batch than the open one, or closed before with other figures, raises ConflictsWithRecord
        (errors.py), as services.batches does. Past the deadline or with the database
        gone: "unavailable"; other errors propagate."""
        checked: list[_Authenticated] = []
        return await self._batch_request(
            self._close_batch(auth, batch_no, figures, digest, malformed, checked), checked
        )

    async def _batch_request(
        self, work: Coroutine[Any, Any, TerminalOutcome], checked: list[_Authenticated]
    ) -> TerminalOutcome:
        """`work` within the deadline. Past it, or with the database gone, "unavailable",
        with the terminal's key once the work had authenticated it, so that its 91 is
        MACed like any answer to an authenticated request (DESIGN §9)."""
        try:
            return await within_deadline(work, self._deadline_s)
        except Exception as exc:
            if not database_unavailable(exc):  # DeadlineExceeded is a TimeoutError
                raise
            mac_key = checked[0].mac_key if checked else None
            return TerminalOutcome("unavailable", error=exc, mac_key=mac_key)

    async def _close_batch(
        self,
        auth: TerminalAuth,
        batch_no: int,
        figures: dict[str, Any],
        digest: bytes,
        malformed: Exception | None,
        authenticated: list[_Authenticated],
    ) -> TerminalOutcome:
        checked = await self._load_and_authenticate(auth, authenticated)
        if not isinstance(checked, _Authenticated):
            return checked
        if malformed is not None:
            return TerminalOutcome("malformed", error=malformed, mac_key=checked.mac_key)
        answer = await close_batch(self._pool, auth.terminal_id, batch_no, figures, digest)
        log.info(
            "batch_closed",
            transport=auth.transport,
            batch_no=batch_no,
            in_balance=answer["in_balance"],
        )
        return TerminalOutcome("answer", answer=answer, mac_key=checked.mac_key)

    async def open_batch(self, auth: TerminalAuth) -> TerminalOutcome:
        """{"batch_no": n}: the batch a close must name (ISO 8583 sign-on answers it);
        within the deadline, as above."""
        checked: list[_Authenticated] = []
        return await self._batch_request(self._open_batch(auth, checked), checked)

    async def _open_batch(
        self, auth: TerminalAuth, authenticated: list[_Authenticated]
    ) -> TerminalOutcome:
        checked = await self._load_and_authenticate(auth, authenticated)
        if not isinstance(checked, _Authenticated):
            return checked
        batch_no = await terminals.open_batch(self._pool, auth.terminal_id)
        return TerminalOutcome("answer", answer={"batch_no": batch_no}, mac_key=checked.mac_key)

    async def _load_and_authenticate(
        self, auth: TerminalAuth, authenticated: list[_Authenticated]
    ) -> _Authenticated | TerminalOutcome:
        """The terminal, authenticated (and put in `authenticated`), or the refusal."""
        structlog.contextvars.bind_contextvars(terminal_id=auth.terminal_id)
        row = await terminals.load_for_auth(self._pool, auth.terminal_id)
        checked = self._authenticate(auth, row)
        if checked is None:
            return _UNAUTHENTICATED
        authenticated.append(checked)
        if not checked.active:
            return TerminalOutcome("disabled", mac_key=checked.mac_key)
        return checked

    def _authenticate(self, auth: TerminalAuth, row: Any) -> _Authenticated | None:
        """The MAC under the key of `row` (the terminal as loaded, or None)."""
        if row is None:
            # Same work and same answer as a bad MAC: no probing for terminal ids.
            auth.verify_mac(_NO_KEY)
            return None
        try:
            mac_key = self._keys.unwrap(row["mac_key_wrapped"], auth.terminal_id, "mac")
            pin_key = self._keys.unwrap(row["pin_key_wrapped"], auth.terminal_id, "pin")
        except KeyUnwrapError:
            log.error("terminal_key_unwrap_failed")
            return None
        if not auth.verify_mac(mac_key):
            return None
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
        return _Authenticated(terminal, mac_key, active=row["status"] == "active")

    @staticmethod
    def _unrecorded(code: Code, stan: str | None, checked: list[_Authenticated]) -> TerminalOutcome:
        return TerminalOutcome(
            "answer",
            answer=unrecorded_answer(code, stan or ""),
            mac_key=checked[0].mac_key if checked else None,
        )
