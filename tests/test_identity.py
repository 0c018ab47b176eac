"""A request's identity for replay vs. 94: its business fields, whatever the transport
(domain/identity.py, schema/004_request_identity.sql)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pos_gateway.domain.identity import request_identity
from pos_gateway.http.state import SERVICES
from pos_gateway.http.validation import parse_transaction
from pos_gateway.services.terminal import TerminalAuth
from pos_gateway.services.transactions import TransactionRequest
from terminal_sim.protocol import pin_block

from .conftest import World

PAN = "6217000000000000018"
_MIGRATION = Path(__file__).resolve().parents[1] / "schema" / "004_request_identity.sql"


def _identity(**fields) -> bytes:
    base = {"txn_type": "purchase", "pan": PAN, "amount": 1250}
    return request_identity(**{**base, **fields})


def test_identity_is_a_sha256_of_the_business_fields() -> None:
    assert len(_identity()) == 32
    assert _identity() == _identity()
    assert len({
        _identity(), _identity(amount=1251), _identity(pan="6217000000000000026"),
        _identity(txn_type="cash_withdrawal"), _identity(original_rrn="000000000001"),
    }) == 5  # fmt: skip


def test_a_reversal_is_identified_by_what_it_reverses() -> None:
    bare = request_identity(txn_type="reversal", pan=None, amount=None, original_stan="000123")
    claims = request_identity(txn_type="reversal", pan=PAN, amount=500, original_stan="000123")
    other = request_identity(txn_type="reversal", pan=None, amount=None, original_stan="000124")
    assert bare == claims != other


def test_items_and_account_max_are_appended_only_when_present() -> None:
    """An itemised purchase or trial (DESIGN §10) is also its lines and its account_max; a
    request without them keeps the identity schema/004 recomputes."""
    lines = (("A1", 2, 500), ("B1", 1, 250))
    itemised = _identity(items=lines)
    assert _identity(items=None, account_max=None) == _identity()
    assert len({
        _identity(), itemised, _identity(items=lines[::-1]), _identity(items=lines[:1]),
        _identity(items=(("A1", 1, 1000), ("B1", 1, 250))), _identity(items=lines, account_max=0),
        _identity(items=lines, account_max=100),
        _identity(txn_type="settlement_trial", items=lines),
    }) == 8  # fmt: skip
    assert _identity(items=lines, account_max=0) == _identity(items=lines, account_max=0)
    # Through the JSON parser: the lines and account_max sent are the identity's.
    sent = [{"code": c, "quantity": q, "unit_price": p} for c, q, p in lines]
    parsed = parse_transaction(_json(items=sent, amount=1250, account_max=0))
    assert parsed.content_hash == _identity(items=lines, account_max=0)


def _json(**fields) -> bytes:
    body = {"type": "purchase", "stan": "000001", "local_time": "2026-11-24T10:15:00+08:00",
            "pan": PAN, "pin_block": "ab" * 16, "amount": 1250, "currency": "CNY"}  # fmt: skip
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def test_json_identity_ignores_time_of_day_pin_block_and_currency() -> None:
    first = parse_transaction(_json())
    later = parse_transaction(_json(local_time="2026-11-24T10:15:42+08:00", pin_block="cd" * 16))
    inquiry = parse_transaction(_json(type="balance_inquiry", amount=None, currency=None))
    inquiry_cny = parse_transaction(_json(type="balance_inquiry", amount=None))

    assert first.content_hash == later.content_hash == _identity()
    assert inquiry.content_hash == inquiry_cny.content_hash
    assert parse_transaction(_json(amount=1251)).content_hash != first.content_hash


async def test_retransmission_with_another_time_of_day_is_a_replay(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    body = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=700)
    moment = datetime.fromisoformat(body["local_time"])
    # Another second of the same local day (the key): the terminal's clock moved on.
    other = moment + timedelta(seconds=1 if moment.second < 59 else -1)

    first = await terminal.send("/v1/transactions", body)
    again = await terminal.send("/v1/transactions", {**body, "local_time": other.isoformat()})

    assert first.body["response_code"] == "00"
    assert again.body == first.body
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 4_300


async def test_a_purchase_sent_by_another_transport_then_json_is_one_purchase(
    world: World, client, db
) -> None:
    """As the ISO 8583 decoder builds it: no JSON, currency 156, its own PIN block."""
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    json_body = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=900)
    iso_like = TransactionRequest(
        txn_type="purchase",
        stan=json_body["stan"],
        local_date=datetime.fromisoformat(json_body["local_time"]).date(),
        pan=card["pan"],
        pin_block=bytes.fromhex(pin_block(terminal.config.pin_key, "4321", card["pan"])),
        amount=900,
        content_hash=request_identity(txn_type="purchase", pan=card["pan"], amount=900),
    )
    auth = TerminalAuth(terminal.config.terminal_id, lambda key: True, "iso8583")

    by_iso = await client.app[SERVICES].terminal.transaction(auth, iso_like, None)
    by_json = await terminal.send("/v1/transactions", json_body)
    changed = await terminal.send("/v1/transactions", {**json_body, "amount": 901})

    assert by_iso.answer["response_code"] == "00"
    assert by_json.body == by_iso.answer
    assert changed.body["response_code"] == "94"
    debits = await db.fetchval(
        "SELECT count(*) FROM journal WHERE account_id = $1 AND kind = 'purchase'",
        card["account_id"],
    )
    assert debits == 1


async def _record(db, terminal_id: str) -> list:
    return await db.fetch(
        "SELECT stan, txn_type, request_hash FROM transactions WHERE terminal_id = $1"
        " ORDER BY stan",
        terminal_id,
    )


@pytest.mark.usefixtures("ledger_clean")
async def test_migration_recomputes_what_it_can_and_empties_the_rest(world: World, db) -> None:
    terminal = await world.terminal()
    tid = terminal.config.terminal_id
    card = await world.card(balance=5_000)
    pan = card["pan"]
    _, bought = await terminal.transact("purchase", pan=pan, pin="4321", amount=300, stan="000001")
    await terminal.transact("balance_inquiry", pan=pan, pin="0000", stan="000002")
    await terminal.transact("cash_withdrawal", pan=pan, amount=100, stan="000003")
    await terminal.transact("purchase", pan="6217990000999999994", pin="1234", amount=5,
                            stan="000004")  # fmt: skip
    await terminal.transact("refund", original_rrn=bought.body["rrn"], amount=100, stan="000005")
    await terminal.transact("reversal", original_stan="000001", stan="000006")
    await terminal.transact("reversal", original_stan="000099", stan="000007")  # blocks 000099
    expected = {
        "000001": _identity(pan=pan, amount=300),
        "000002": request_identity(txn_type="balance_inquiry", pan=pan, amount=None),
        "000003": request_identity(txn_type="cash_withdrawal", pan=pan, amount=100),
        "000004": b"",  # the card number is not on record
        "000005": b"",  # whether the refund named the card is not on record
        "000006": request_identity(
            txn_type="reversal", pan=None, amount=None, original_stan="000001"
        ),
        # Its original was never seen: the key it reserved names it.
        "000007": request_identity(
            txn_type="reversal", pan=None, amount=None, original_stan="000099"
        ),
        "000099": b"",  # the blocked key
    }
    before = {r["stan"]: bytes(r["request_hash"]) for r in await _record(db, tid)}
    # What the gateway stores now is what the migration computes.
    assert {s: before[s] for s, h in expected.items() if h} == {
        s: h for s, h in expected.items() if h
    }

    legacy = db.transaction()
    await legacy.start()
    try:
        await db.execute(
            "UPDATE transactions SET request_hash = '\\xdeadbeef' WHERE terminal_id = $1"
            " AND txn_type <> 'blocked'",
            tid,
        )
        await db.execute(_MIGRATION.read_text())
        after = {r["stan"]: bytes(r["request_hash"]) for r in await _record(db, tid)}
    finally:
        await legacy.rollback()  # leave the shared database as it was
    assert after == expected


async def test_a_row_of_unknown_identity_is_answered_by_its_key(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    _, first = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=300)
    await db.execute("UPDATE transactions SET request_hash = '' WHERE rrn = $1", first.body["rrn"])
    body = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=300,
                                     stan=first.body["stan"])  # fmt: skip

    again = await terminal.send("/v1/transactions", body)

    assert again.body == first.body
