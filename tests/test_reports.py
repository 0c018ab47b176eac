"""Statements, settlement reports and the ledger check."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date

import pytest

from pos_gateway import cli as gateway_cli
from pos_gateway.logs import configure_logging
from pos_gateway.services.reports import verify_ledger

from .conftest import World

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def _statement(world: World, account_id: int, **query: str) -> tuple[int, object]:
    resp = await world.client.get(
        f"/v1/admin/accounts/{account_id}/statement", params=query, headers=world.headers
    )
    if query.get("format") == "csv":
        return resp.status, await resp.text()
    return resp.status, await resp.json()


async def test_statement_lists_allocations_and_consumption_newest_first(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    _, bought = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=1_200)
    await terminal.transact("refund", original_rrn=bought.body["rrn"], amount=200)

    status, body = await _statement(world, card["account_id"])

    assert status == 200
    entries = body["entries"]
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in entries] == [
        ("refund", 200, 9_000),
        ("purchase", -1_200, 8_800),
        ("allocation", 10_000, 10_000),
    ]
    assert entries[1]["merchant_name"].startswith("Test pharmacy")
    assert entries[1]["rrn"] == bought.body["rrn"]
    assert body["next_cursor"] is None


async def test_statement_pages_with_a_cursor(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=100_000)
    for _ in range(7):
        await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        status, body = await _statement(world, card["account_id"], **query)
        assert status == 200
        seen += [e["entry_id"] for e in body["entries"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert len(seen) == 8 and seen == sorted(seen, reverse=True)


async def test_statement_csv_download(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=250)

    status, text = await _statement(world, card["account_id"], format="csv")

    rows = list(csv.DictReader(io.StringIO(text)))
    assert status == 200
    assert [(r["kind"], r["amount"]) for r in rows] == [
        ("purchase", "-2.50"),
        ("allocation", "50.00"),
    ]


@pytest.mark.parametrize(
    "query",
    [
        {"cursor": "garbage!"},
        {"cursor": "ZTk5OTk5OTk5OTk5OTk5OTk5OTk"},  # e9999999999999999999: beyond bigint
        {"limit": "0"},
        {"limit": "x"},
        {"format": "xml"},
    ],
)
async def test_statement_bad_query_is_400(world: World, query: dict[str, str]) -> None:
    card = await world.card()

    status, body = await _statement(world, card["account_id"], **query)

    assert status == 400 and "error" in body


async def test_settlement_nets_purchases_refunds_and_reversals(world: World, db) -> None:
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await world.card(balance=100_000)
    _, a = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=5_000)
    _, b = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=3_000)
    await terminal.transact("purchase", pan=card["pan"], pin="0000", amount=9_999)  # declined
    await terminal.transact("refund", original_rrn=a.body["rrn"], amount=1_000)
    await terminal.transact("reversal", original_stan=b.body["stan"])
    # The day is the terminal's local date (the simulator sends UTC+8 times).
    local_day = (
        await db.fetchval("SELECT local_date FROM transactions WHERE rrn = $1", a.body["rrn"])
    ).isoformat()

    resp = await world.client.get(
        "/v1/admin/settlement",
        params={"date": local_day, "merchant_id": merchant},
        headers=world.headers,
    )
    body = await resp.json()
    csv_resp = await world.client.get(
        "/v1/admin/settlement",
        params={"date": local_day, "merchant_id": merchant, "format": "csv"},
        headers=world.headers,
    )
    csv_rows = list(csv.DictReader(io.StringIO(await csv_resp.text())))

    assert resp.status == 200
    [row] = body["merchants"]
    assert (row["purchases_count"], row["purchases_amount"]) == (2, 8_000)
    assert (row["refunds_count"], row["refunds_amount"]) == (1, 1_000)
    assert (row["reversals_count"], row["reversals_amount"]) == (1, 3_000)
    assert row["net_amount"] == 4_000
    assert csv_rows[0]["net_amount"] == "40.00"  # yuan for people; fen in the JSON


async def test_ledger_check_finds_a_balance_that_differs_from_its_journal(world: World, db) -> None:
    card = await world.card(balance=1_000)
    corruption = db.transaction()
    await corruption.start()
    try:
        await db.execute(
            "UPDATE individual_accounts SET balance = balance + 1 WHERE account_id = $1",
            card["account_id"],
        )
        report = await verify_ledger(db)
    finally:
        await corruption.rollback()

    assert not report["ok"]
    assert report["problems"]["balance_differs_from_journal_sum"] == [
        {"account_id": card["account_id"], "balance": 1_001, "journal_sum": 1_000}
    ]
    assert "last_balance_after_differs" in report["problems"]


async def test_verify_ledger_command_exit_codes(
    world: World, db, gateway_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    card = await world.card(balance=1_000)

    clean = await asyncio.to_thread(gateway_cli.main, ["verify-ledger"])
    await db.execute(
        "UPDATE individual_accounts SET balance = balance + 5 WHERE account_id = $1",
        card["account_id"],
    )
    try:
        broken = await asyncio.to_thread(gateway_cli.main, ["verify-ledger"])
    finally:
        await db.execute(
            "UPDATE individual_accounts SET balance = balance - 5 WHERE account_id = $1",
            card["account_id"],
        )
        configure_logging("info")
    out = capsys.readouterr().out

    assert clean == 0 and broken == 1
    assert "MISMATCH balance_differs_from_journal_sum" in out


async def test_ledger_check_finds_an_allocation_journaled_twice(world: World, db) -> None:
    card = await world.card(balance=0)
    month = date(2026, 1, 1)
    corruption = db.transaction()
    await corruption.start()
    try:
        ssn = card["ssn"]
        await db.execute(
            "INSERT INTO contributions (ssn, month, individual_part) VALUES ($1, $2, 500)",
            ssn,
            month,
        )
        await db.execute(
            """
            INSERT INTO allocations (account_id, month, ssn, employer_part, individual_part,
                                     amount)
            VALUES ($1, $2, $3, 0, 500, 500)
            """,
            card["account_id"],
            month,
            ssn,
        )
        for balance in (500, 1_000):  # the same month's line twice
            await db.execute(
                """
                INSERT INTO journal (account_id, kind, amount, balance_after, reference)
                VALUES ($1, 'allocation', 500, $2, 'allocation 2026-01')
                """,
                card["account_id"],
                balance,
            )
        await db.execute(
            "UPDATE individual_accounts SET balance = 1000 WHERE account_id = $1",
            card["account_id"],
        )
        report = await verify_ledger(db)
    finally:
        await corruption.rollback()

    assert list(report["problems"]) == ["allocation_not_journaled_once"]
