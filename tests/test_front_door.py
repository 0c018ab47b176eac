"""The transport-neutral terminal front door (services/terminal.py), driven as a second
transport would drive it: a terminal id, a MAC check, a parsed request."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
import structlog

from pos_gateway.domain.cards import mask_pan
from pos_gateway.errors import InvalidInput
from pos_gateway.http.state import METRICS, SERVICES
from pos_gateway.http.validation import parse_transaction
from pos_gateway.logs import configure_logging
from pos_gateway.services.terminal import TerminalAuth

from .conftest import World

pytestmark = pytest.mark.usefixtures("ledger_clean")


def _auth(terminal_id: str, good_key: bytes, seen: list[bytes] | None = None) -> TerminalAuth:
    def verify_mac(mac_key: bytes) -> bool:
        if seen is not None:
            seen.append(mac_key)
        return mac_key == good_key

    return TerminalAuth(terminal_id, verify_mac, "iso8583")


def _parsed(body: dict) -> object:
    return parse_transaction(json.dumps(body).encode())


async def test_a_purchase_through_the_front_door_is_answered_and_counted(
    world: World, client, db
) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    front_door = client.app[SERVICES].terminal
    body = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=1_200)

    outcome = await front_door.transaction(
        _auth(terminal.config.terminal_id, terminal.config.mac_key), _parsed(body), None
    )

    assert outcome.status == "answer"
    assert outcome.answer["response_code"] == "00" and outcome.answer["balance"] == 3_800
    assert outcome.mac_key == terminal.config.mac_key  # the transport MACs its answer
    metrics = client.app[METRICS].render().decode()
    assert 'response_code="00",transport="iso8583",type="purchase"} 1.0' in metrics
    # The same request over HTTP is a retransmission of it: one debit.
    again = await terminal.send("/v1/transactions", body)
    assert again.body == outcome.answer
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 3_800


async def test_unknown_terminal_costs_one_mac_check_and_records_nothing(client, db) -> None:
    front_door = client.app[SERVICES].terminal
    seen: list[bytes] = []
    body = {"type": "balance_inquiry", "stan": "000001", "local_time": "2026-11-24T10:15:00+08:00",
            "pan": "6217000000000000018", "pin_block": "00" * 16}  # fmt: skip

    outcome = await front_door.transaction(_auth("ZZZZZZZZ", b"k" * 32, seen), _parsed(body), None)

    assert outcome.status == "unauthenticated" and outcome.mac_key is None
    assert seen == [bytes(32)]  # a dummy check, as for a known terminal
    assert (
        await db.fetchval("SELECT count(*) FROM transactions WHERE terminal_id = 'ZZZZZZZZ'") == 0
    )


async def test_bad_mac_is_unauthenticated_even_when_malformed(world: World, client) -> None:
    terminal = await world.terminal()
    front_door = client.app[SERVICES].terminal
    malformed = InvalidInput("no", code="invalid_json")

    wrong = await front_door.transaction(
        _auth(terminal.config.terminal_id, b"x" * 32), None, malformed
    )
    right = await front_door.transaction(
        _auth(terminal.config.terminal_id, terminal.config.mac_key), None, malformed
    )

    assert wrong.status == "unauthenticated" and wrong.error is None
    assert right.status == "malformed" and right.error is malformed
    assert right.mac_key == terminal.config.mac_key


async def test_disabled_terminal_is_refused_by_every_use_case(world: World, client, db) -> None:
    terminal = await world.terminal()
    card = await world.card()
    tid = terminal.config.terminal_id
    await world.admin(f"/v1/admin/terminals/{tid}/disable", status=200)
    front_door = client.app[SERVICES].terminal
    auth = _auth(tid, terminal.config.mac_key)
    body = terminal.transaction_body("balance_inquiry", pan=card["pan"], pin="4321")

    outcomes = [
        await front_door.transaction(auth, _parsed(body), None),
        await front_door.open_batch(auth),
        await front_door.close_batch(auth, 1, {"purchases": {"count": 0, "amount": 0},
                                               "refunds": {"count": 0, "amount": 0}}, b"d"),
    ]  # fmt: skip

    assert [o.status for o in outcomes] == ["disabled"] * 3
    assert await db.fetchval("SELECT count(*) FROM transactions WHERE terminal_id = $1", tid) == 0


async def test_open_batch_answers_the_batch_number(world: World, client) -> None:
    terminal = await world.terminal()
    front_door = client.app[SERVICES].terminal

    outcome = await front_door.open_batch(
        _auth(terminal.config.terminal_id, terminal.config.mac_key)
    )

    assert outcome.status == "answer" and outcome.answer == {"batch_no": 1}


def test_no_http_module_imports_the_store() -> None:
    http = Path(__file__).resolve().parents[1] / "pos_gateway" / "http"
    offenders = []
    for path in sorted(http.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.startswith("pos_gateway.store") for n in names):
                offenders.append(path.name)
    assert offenders == []


async def test_the_one_log_line_names_the_transport_and_masks_the_pan(world: World, client) -> None:
    terminal = await world.terminal()
    card = await world.card()
    body = terminal.transaction_body("balance_inquiry", pan=card["pan"], pin="4321")
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        structlog.contextvars.clear_contextvars()  # as a listener's fresh task starts
        await client.app[SERVICES].terminal.transaction(
            _auth(terminal.config.terminal_id, terminal.config.mac_key), _parsed(body), None
        )
    finally:
        configure_logging("info")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (line,) = [x for x in lines if x["event"] == "transaction"]
    assert line["transport"] == "iso8583" and line["terminal_id"] == terminal.config.terminal_id
    assert line["response_code"] == "00" and line["pan"] == mask_pan(card["pan"])
    assert card["pan"] not in stream.getvalue() and body["pin_block"] not in stream.getvalue()
