"""The terminal protocol: signed requests to /v1/transactions."""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from aiohttp import web

from pos_gateway.errors import InvalidInput, NotAuthenticated, NotPermitted
from pos_gateway.http.api import TERMINAL, operation
from pos_gateway.http.messages import (
    BatchClose,
    BatchCloseAnswer,
    OpenBatch,
    TerminalRequest,
    TransactionAnswer,
)
from pos_gateway.http.state import SERVICES, SETTINGS
from pos_gateway.http.validation import (
    MAX_BODY_BYTES,
    TERMINAL_ID_RE,
    parse_batch_close,
    parse_transaction,
)
from pos_gateway.security.signing import signature_valid, timestamp_fresh
from pos_gateway.services.terminal import TerminalAuth, TerminalOutcome
from pos_gateway.services.transactions import TransactionRequest

_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
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
        raise NotAuthenticated(
            "X-Terminal-Id must be 8 characters [0-9A-Z]", code="bad_terminal_id"
        )
    structlog.contextvars.bind_contextvars(terminal_id=terminal_id)
    if not timestamp_fresh(timestamp, time.time(), settings.timestamp_window_s):
        raise NotAuthenticated(
            f"X-Timestamp must be Unix seconds within {settings.timestamp_window_s} s of now",
            code="bad_timestamp",
        )
    if not _SIGNATURE_RE.fullmatch(signature):
        raise NotAuthenticated(
            "X-Signature must be 64 lowercase hex characters", code="bad_signature"
        )
    return terminal_id, timestamp, signature


def _auth(request: web.Request, body: bytes, headers: tuple[str, str, str]) -> TerminalAuth:
    """The terminal's claim: its id, and its HMAC signature over this request."""
    terminal_id, timestamp, signature = headers
    method, path = request.method, request.path
    return TerminalAuth(
        terminal_id=terminal_id,
        verify_mac=lambda mac_key: signature_valid(
            mac_key, method, path, timestamp, body, signature
        ),
        transport="http",
    )


def _answer_or_raise(outcome: TerminalOutcome) -> dict[str, Any]:
    if outcome.status == "unauthenticated":
        raise NotAuthenticated(_NOT_AUTHENTICATED, code="bad_signature")
    if outcome.status == "disabled":
        raise NotPermitted("terminal is disabled", code="terminal_disabled")
    if outcome.status == "malformed":
        raise outcome.error or InvalidInput("malformed request")
    if outcome.status == "unavailable":
        assert outcome.error is not None
        raise outcome.error  # the middleware's 503
    assert outcome.answer is not None
    return outcome.answer


@operation(
    "Every financial request (purchase, balance inquiry, refund, reversal; cash "
    "withdrawal and transfer are declined 57)",
    "terminal",
    security=TERMINAL,
    body=TerminalRequest,
    ok=TransactionAnswer,
    errors=("400", "401", "403"),
)
async def post_transaction(request: web.Request) -> web.Response:
    """POST /v1/transactions: read, call the terminal front door, render."""
    body = await read_body(request)
    auth = _auth(request, body, _check_headers(request))
    try:
        txn: TransactionRequest | None = parse_transaction(body)
        malformed = None
    except InvalidInput as exc:
        txn, malformed = None, exc
    outcome = await request.app[SERVICES].terminal.transaction(auth, txn, malformed)
    return web.json_response(_answer_or_raise(outcome))


@operation(
    "Close the open batch: compare the terminal's totals with the gateway's",
    "terminal",
    security=TERMINAL,
    body=BatchClose,
    ok=BatchCloseAnswer,
    errors=("400", "401", "403", "409"),
)
async def post_batch_close(request: web.Request) -> web.Response:
    """POST /v1/batches/close: reconcile the terminal's totals, open the next batch."""
    body = await read_body(request)
    auth = _auth(request, body, _check_headers(request))
    front_door = request.app[SERVICES].terminal
    try:
        batch_no, figures, digest = parse_batch_close(body)
    except InvalidInput as exc:
        # Reported only once the terminal is authenticated, as a transaction's is.
        outcome = await front_door.close_batch(auth, 0, {}, b"", malformed=exc)
    else:
        outcome = await front_door.close_batch(auth, batch_no, figures, digest)
    return web.json_response(_answer_or_raise(outcome))


@operation(
    "The open batch number (signed request, empty body)",
    "terminal",
    security=TERMINAL,
    ok=OpenBatch,
    errors=("401", "403"),
)
async def get_open_batch(request: web.Request) -> web.Response:
    """GET /v1/batches/open (signed, empty body): the batch number a close must name, for a
    terminal that lost its own count."""
    auth = _auth(request, await read_body(request), _check_headers(request))
    outcome = await request.app[SERVICES].terminal.open_batch(auth)
    return web.json_response(_answer_or_raise(outcome))
