"""Errors at the HTTP edge (http/middleware.py, http/errors.py): domain errors become
statuses by one table; a constraint name never reaches a client; only connection-level
failures are "database unavailable" (an InterfaceError only by its message:
store/database.py), anything else is a 500 (96 on the terminal path) with one log line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from pos_gateway.errors import (
    ConflictsWithRecord,
    DomainError,
    InvalidInput,
    NoSuchRecord,
    NotAuthenticated,
    NotPermitted,
)
from pos_gateway.http.errors import status_of
from pos_gateway.http.middleware import error_mapping
from pos_gateway.http.state import METRICS, SERVICES
from pos_gateway.metrics import Metrics

from .conftest import World


def _constraint_error(kind: type[asyncpg.PostgresError], name: str) -> asyncpg.PostgresError:
    error = kind("new row violates check constraint")
    error.constraint_name = name  # type: ignore[attr-defined]
    return error


CASES: list[tuple[str, Callable[[], BaseException], int, str]] = [
    ("refused", lambda: ConnectionRefusedError(111, "refused"), 503, "database_unavailable"),
    ("timeout", lambda: TimeoutError(), 503, "database_unavailable"),
    ("lost", lambda: asyncpg.ConnectionDoesNotExistError("closed"), 503,
     "database_unavailable"),
    ("interface_error", lambda: asyncpg.InterfaceError("another operation is in progress"),
     500, "internal_error"),
    ("wrong_arguments", lambda: asyncpg.InterfaceError(
        "the server expects 2 arguments for this query, 1 was passed"), 500, "internal_error"),
    # The same classes after a cut or a cancelled statement: the connection failed (503).
    ("closed", lambda: asyncpg.InterfaceError("cannot call Connection.fetch(): connection is "
     "closed"), 503, "database_unavailable"),
    ("state", lambda: asyncpg.exceptions.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"), 503,
     "database_unavailable"),
    ("key_error", lambda: KeyError("balance"), 500, "internal_error"),
    ("check", lambda: _constraint_error(asyncpg.CheckViolationError, "accounts_balance_ck"),
     400, "constraint_violation"),
    ("unique", lambda: _constraint_error(asyncpg.UniqueViolationError, "cards_pan_key"),
     409, "conflict"),
    ("domain", lambda: NoSuchRecord("no card 6217…", code="card_not_found"), 404,
     "card_not_found"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "status", "code"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
async def test_failures_are_mapped_at_the_edge(
    aiohttp_client: Any, make: Callable[[], BaseException], status: int, code: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise make()

    app = web.Application(middlewares=[error_mapping])
    app[METRICS] = Metrics()
    app.router.add_get("/fail", handler)
    client = await aiohttp_client(app)

    with capture_logs() as logs:
        resp = await client.get("/fail")
    body = await resp.json()

    assert (resp.status, body["error"]["code"]) == (status, code)
    assert "_ck" not in body["error"]["message"] and "_key" not in body["error"]["message"]
    if status == 500:
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["unhandled_error"]


def test_one_table_gives_each_kind_of_domain_error_its_status() -> None:
    assert [
        status_of(kind("x"))
        for kind in (InvalidInput, NotAuthenticated, NotPermitted, NoSuchRecord,
                     ConflictsWithRecord)
    ] == [400, 401, 403, 404, 409]  # fmt: skip
    assert status_of(DomainError("x")) == 400


async def test_a_programming_error_on_the_terminal_path_is_96_not_91(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    services = world.client.server.app

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise asyncpg.InterfaceError("cannot perform operation: another operation is in progress")

    monkeypatch.setattr(services[SERVICES].transactions, "process", broken)
    with capture_logs() as logs:
        _, answer = await terminal.transact(
            "purchase", pan=card["pan"], pin=card["pin"], amount=100
        )
    assert answer.status == 200
    assert answer.response_code == "96"
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["transaction_failed"]
