"""The terminal protocol: signed requests to /v1/transactions."""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from aiohttp import web

from pos_gateway.domain.decisions import Code, MerchantStanding
from pos_gateway.errors import ApiError, BadRequest, Forbidden, Unauthorized
from pos_gateway.http.state import METRICS, SERVICES, SETTINGS
from pos_gateway.http.validation import (
    MAX_BODY_BYTES,
    TERMINAL_ID_RE,
    parse_batch_close,
    parse_transaction,
)
from pos_gateway.security.keys import KeyUnwrapError
from pos_gateway.security.signing import signature_valid, timestamp_fresh
from pos_gateway.services.batches import close_batch
from pos_gateway.services.deadline import DeadlineExceeded, within_deadline
from pos_gateway.services.transactions import (
    Overloaded,
    Terminal,
    TransactionRequest,
    unrecorded_answer,
)
from pos_gateway.store import terminals
from pos_gateway.store.database import UNAVAILABLE_ERRORS
from pos_gateway.store.transactions import RequestKey, load_context

log = structlog.get_logger("pos_gateway.terminal")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_NO_KEY = bytes(32)  # for the dummy HMAC of an unknown terminal
_NOT_AUTHENTICATED = "unknown terminal or bad signature"


async def read_body(request: web.Request) -> bytes:
    """The body as sent (the signature covers these bytes), at most 16 KiB."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, request.content_length)
    return await request.read()


def _check_headers(request: web.Request) -> tuple[str, str, str]:
    """Shape of the three auth headers and the timestamp window: 401 with no I/O."""
    settings = request.app[SETTINGS]
    terminal_id = request.headers.get("X-Terminal-Id", "")
    timestamp = request.headers.get("X-Timestamp", "")
    signature = request.headers.get("X-Signature", "")
    if not TERMINAL_ID_RE.fullmatch(terminal_id):
        raise Unauthorized("X-Terminal-Id must be 8 characters [0-9A-Z]", code="bad_terminal_id")
    structlog.contextvars.bind_contextvars(terminal_id=terminal_id)
    if not timestamp_fresh(timestamp, time.time(), settings.timestamp_window_s):
        raise Unauthorized(
            f"X-Timestamp must be Unix seconds within {settings.timestamp_window_s} s of now",
            code="bad_timestamp",
        )
    if not _SIGNATURE_RE.fullmatch(signature):
        raise Unauthorized("X-Signature must be 64 lowercase hex characters", code="bad_signature")
    return terminal_id, timestamp, signature


async def authenticate(request: web.Request, body: bytes) -> Terminal:
    """Check terminal id, timestamp window and HMAC; 401 or 403 before anything is recorded."""
    headers = _check_headers(request)
    row = await terminals.load_for_auth(request.app[SERVICES].pool, headers[0])
    return verify_terminal(request, body, headers, row)


def verify_terminal(
    request: web.Request, body: bytes, headers: tuple[str, str, str], row: Any
) -> Terminal:
    """The signature over `body` under the key of `row` (the terminal as loaded, or None)."""
    services = request.app[SERVICES]
    terminal_id, timestamp, signature = headers
    if row is None:
        # Same work and same answer as a bad signature: no probing for terminal ids.
        signature_valid(_NO_KEY, request.method, request.path, timestamp, body, signature)
        raise Unauthorized(_NOT_AUTHENTICATED, code="bad_signature")
    try:
        mac_key = services.key_wrapper.unwrap(row["mac_key_wrapped"], terminal_id, "mac")
        pin_key = services.key_wrapper.unwrap(row["pin_key_wrapped"], terminal_id, "pin")
    except KeyUnwrapError:
        log.error("terminal_key_unwrap_failed")
        raise Unauthorized(_NOT_AUTHENTICATED, code="bad_signature") from None
    if not signature_valid(mac_key, request.method, request.path, timestamp, body, signature):
        raise Unauthorized(_NOT_AUTHENTICATED, code="bad_signature")
    if row["status"] != "active":
        raise Forbidden("terminal is disabled", code="terminal_disabled")
    return Terminal(
        terminal_id=terminal_id,
        merchant_id=row["merchant_id"],
        merchant=MerchantStanding(
            designated_from=row["designated_from"],
            designated_until=row["designated_until"],
            suspended=row["suspended"],
        ),
        pin_key=pin_key,
    )


async def post_transaction(request: web.Request) -> web.Response:
    """POST /v1/transactions: authenticate, validate, process, answer (within the deadline)."""
    started = time.perf_counter()
    metrics = request.app[METRICS]
    body = await read_body(request)
    txn_type, stan, pan = "unknown", None, None
    try:
        headers = _check_headers(request)
        try:
            txn: TransactionRequest | None = parse_transaction(body)
            malformed = None
        except BadRequest as exc:
            txn, malformed = None, exc
        if txn is not None:
            # Bound before the work starts, so its log lines carry them too (the work runs
            # as a task of its own). A 401 or 400 raised inside answers no business fields.
            txn_type, stan, pan = txn.txn_type, txn.stan, txn.pan
            structlog.contextvars.bind_contextvars(stan=stan, type=txn_type)
        answer = await within_deadline(
            _authenticate_and_process(request, body, headers, txn, malformed),
            request.app[SETTINGS].request_deadline_s,
        )
    except DeadlineExceeded:
        # The work is cancelled behind this answer: rolled back, or committed whole and
        # then found by the retransmission. The terminal hears in time either way.
        log.warning("request_deadline_exceeded")
        metrics.deadline_exceeded.inc()
        answer = unrecorded_answer(Code.ISSUER_UNAVAILABLE, stan or "")
    except UNAVAILABLE_ERRORS as exc:
        # Answer fast: the terminal retries or reverses; hanging helps nobody.
        log.error("database_unavailable", error=type(exc).__name__)
        answer = unrecorded_answer(Code.ISSUER_UNAVAILABLE, stan or "")
    except Overloaded:
        answer = unrecorded_answer(Code.ISSUER_UNAVAILABLE, stan or "")
    except ApiError:
        raise
    except Exception:
        # Each write is one statement, so nothing is half-done; the terminal reverses.
        log.exception("transaction_failed")
        answer = unrecorded_answer(Code.SYSTEM_MALFUNCTION, stan or "")
    code = answer["response_code"]
    metrics.transactions.labels(txn_type, code).inc()
    metrics.latency.labels(txn_type).observe(time.perf_counter() - started)
    log.info(
        "transaction",
        response_code=code,
        amount=answer.get("amount"),
        balance=answer.get("balance"),
        rrn=answer.get("rrn"),
        pan=pan,
    )
    return web.json_response(answer)


async def _authenticate_and_process(
    request: web.Request,
    body: bytes,
    headers: tuple[str, str, str],
    txn: TransactionRequest | None,
    malformed: BadRequest | None,
) -> dict[str, Any]:
    """The database part of a transaction request, run under the deadline."""
    services = request.app[SERVICES]
    # One read for terminal, stored answer and card; nothing is decided on it before
    # the signature is verified, and a malformed body is reported only after that.
    context = await load_context(
        services.pool,
        headers[0],
        RequestKey(headers[0], txn.local_date, txn.stan) if txn else None,
        txn.pan if txn else None,
    )
    terminal = verify_terminal(request, body, headers, context.terminal if context else None)
    if txn is None:
        assert malformed is not None
        raise malformed
    return await services.transactions.process(terminal, txn, context)


async def post_batch_close(request: web.Request) -> web.Response:
    """POST /v1/batches/close: reconcile the terminal's totals, open the next batch."""
    body = await read_body(request)
    answer = await within_deadline(
        _close_batch(request, body), request.app[SETTINGS].request_deadline_s
    )
    return web.json_response(answer)


async def _close_batch(request: web.Request, body: bytes) -> dict[str, Any]:
    services = request.app[SERVICES]
    terminal = await authenticate(request, body)
    batch_no, figures, digest = parse_batch_close(body)
    answer = await close_batch(services.pool, terminal.terminal_id, batch_no, figures, digest)
    log.info("batch_closed", batch_no=batch_no, in_balance=answer["in_balance"])
    return answer


async def get_open_batch(request: web.Request) -> web.Response:
    """GET /v1/batches/open (signed, empty body): the batch number a close must name, for a
    terminal that lost its own count."""
    body = await read_body(request)
    batch_no = await within_deadline(
        _open_batch(request, body), request.app[SETTINGS].request_deadline_s
    )
    return web.json_response({"batch_no": batch_no})


async def _open_batch(request: web.Request, body: bytes) -> int:
    terminal = await authenticate(request, body)
    return await terminals.open_batch(request.app[SERVICES].pool, terminal.terminal_id)
