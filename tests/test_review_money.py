"""Money-path review findings (r1): each test pins a defect found after the merges."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import pytest

from pos_gateway.app import create_app
from pos_gateway.services.group_commit import GroupCommitter, NotWritten
from pos_gateway.settings import Settings
from pos_gateway.store import batches
from pos_gateway.store import transactions as store
from pos_gateway.store.transactions import GoodPinRequest, RequestKey

from .conftest import World
from .test_settlement import (
    accumulators,
    catalogue,
    covered_card,
    fund_owed,
    itemised,
    items,
    set_policies,
)

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def test_reversal_of_a_refunded_itemised_purchase_with_no_account_part_is_12(
    world: World, db
) -> None:
    """A refund of an itemised purchase the account paid nothing of leaves refunded_amount
    at 0; the reversal must still see the refund and decline (12), not acknowledge."""
    await set_policies(world, deductible=0)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await covered_card(world)
    body, bought = await itemised(terminal, card, items((codes["A"], 1, 10_000)), account_max=0)
    assert bought.body["response_code"] == "00", bought.body
    assert (bought.body["split"]["account"], bought.body["split"]["cash"]) == (0, 3000)
    _, refund = await terminal.transact("refund", original_rrn=bought.body["rrn"], amount=10_000)
    assert refund.body["response_code"] == "00", refund.body
    _, reversal = await terminal.transact("reversal", original_stan=body["stan"])
    assert reversal.body["response_code"] == "12", reversal.body
    assert not await db.fetchval(
        "SELECT reversed FROM transactions WHERE rrn = $1", bought.body["rrn"]
    )
    assert await accumulators(db, card["ssn"]) == (0, 0)
    assert await fund_owed(db, merchant) == 0


async def _blocked_by(db, blocker: int) -> int | None:
    """The backend (of this database) waiting for a lock `blocker` holds, if any."""
    return await db.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND $1 = ANY(pg_blocking_pids(pid)) LIMIT 1",
        blocker,
    )


async def _wait_blocked_by(db, blocker: int) -> int:
    for _ in range(2000):
        pid = await _blocked_by(db, blocker)
        if pid is not None:
            return pid
        await asyncio.sleep(0.005)
    raise AssertionError(f"nothing waited for backend {blocker}")


@pytest.fixture
async def patient_world(aiohttp_client, settings: Settings) -> World:
    """A gateway whose deadline outlasts the lock waits a test sets up on purpose."""
    app = create_app(dataclasses.replace(settings, request_deadline_s=60.0))
    return World(await aiohttp_client(app), settings)


async def _plain_purchase(world: World) -> tuple[Any, dict, dict, Any]:
    """A terminal, a card of 10,000 and its approved plain purchase of 1,250."""
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    body, bought = await terminal.transact("purchase", pan=card["pan"], pin=card["pin"],
                                           amount=1250)  # fmt: skip
    assert bought.body["response_code"] == "00"
    return terminal, card, body, bought


async def test_reversal_racing_the_batch_close_never_reverses_a_closed_purchase(
    patient_world: World, db, database_url: str
) -> None:
    """A reversal that read the open batch before a close committed must not reverse a
    purchase that close counted: the closed batch's figures would no longer be its
    purchases, and the card would get back money the merchant is settled for."""
    terminal, card, body, bought = await _plain_purchase(patient_world)
    terminal_id = terminal.config.terminal_id
    figures = {"count": 1, "amount": 1250}
    none = {"count": 0, "amount": 0}

    gate = await asyncpg.connect(database_url)
    try:
        # The close takes the terminal, counts the purchase, and waits here to write its row.
        gate_tx = gate.transaction()
        await gate_tx.start()
        # (A table lock: a row of its own would take the terminal before the close does.)
        await gate.execute("LOCK TABLE batches IN SHARE MODE")
        closing = asyncio.create_task(terminal.close_batch(1, figures, none))
        close_pid = await _wait_blocked_by(db, gate.get_server_pid())
        reversing = asyncio.create_task(terminal.transact("reversal", original_stan=body["stan"]))
        await _wait_blocked_by(db, close_pid)
        await gate_tx.rollback()
    finally:
        await gate.close()
    _, closed = await closing
    _, reversal = await reversing
    assert closed.body["in_balance"] is True, closed.body
    assert reversal.body["response_code"] == "12", reversal.body
    assert not await db.fetchval(
        "SELECT reversed FROM transactions WHERE rrn = $1", bought.body["rrn"]
    )
    assert (
        await db.fetchval(
            "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
        )
        == 10_000 - 1250
    )
    # The closed batch still holds what it was closed with.
    recount = await db.fetchrow(batches._TOTALS, terminal_id, 1)
    assert (recount["purchases_count"], recount["purchases_amount"]) == (1, 1250)


async def test_a_right_pin_dropped_from_the_group_commit_queue_gives_its_try_back(
    aiohttp_client, settings: Settings, db
) -> None:
    """A purchase whose PIN was right but which its deadline took out of the group-commit
    queue before any write (answered 91) must not leave its PIN try counted: three such
    91s in a slow spell would lock a card nobody typed a wrong PIN on."""
    app = create_app(dataclasses.replace(settings, request_deadline_s=2.0, group_commit_flushers=1))
    world = World(await aiohttp_client(app), settings)
    merchant = await world.merchant()
    first, second = await world.terminal(merchant), await world.terminal(merchant)
    busy, card = await world.card(balance=10_000), await world.card(balance=10_000)

    held = db.transaction()
    await held.start()
    # The flusher's write of `busy` waits for this lock; `card` queues behind it.
    await db.execute(
        "SELECT 1 FROM individual_accounts WHERE account_id = $1 FOR UPDATE", busy["account_id"]
    )
    writing = asyncio.create_task(
        first.transact("purchase", pan=busy["pan"], pin=busy["pin"], amount=100)
    )
    await _wait_blocked_by(db, await db.fetchval("SELECT pg_backend_pid()"))
    _, queued = await second.transact("purchase", pan=card["pan"], pin=card["pin"], amount=100)
    assert queued.body["response_code"] == "91", queued.body
    await held.rollback()
    await writing
    failures = None
    for _ in range(1000):
        failures = await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"])
        if failures == 0:
            break
        await asyncio.sleep(0.01)
    assert failures == 0
    assert await db.fetchval(
        "SELECT count(*) FROM transactions WHERE card_id = (SELECT card_id FROM cards"
        " WHERE pan = $1)", card["pan"],
    ) == 0  # fmt: skip


async def test_a_reversal_whose_original_arrives_while_it_waits_locks_the_person_first(
    patient_world: World, db, database_url: str
) -> None:
    """The reversal that finds its original only after its reservation waited for it must
    take the person before the purchase row, as an itemised refund does (person, then
    row): the other order deadlocks against a refund of that purchase."""
    world = patient_world
    await set_policies(world, deductible=0)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await covered_card(world)
    body, bought = await itemised(terminal, card, items((codes["A"], 1, 10_000)))
    assert bought.body["response_code"] == "00", bought.body
    late_stan = f"{(int(body['stan']) + 500_000) % 1_000_000:06d}"

    arriving = await asyncpg.connect(database_url)
    refund = await asyncpg.connect(database_url)
    try:
        # The purchase "arrives" under a STAN the reversal looks for: moved in a
        # transaction the reversal's reservation has to wait for.
        arriving_tx = arriving.transaction()
        await arriving_tx.start()
        await arriving.execute(
            "UPDATE transactions SET stan = $2 WHERE rrn = $1", bought.body["rrn"], late_stan
        )
        reversing = asyncio.create_task(terminal.transact("reversal", original_stan=late_stan))
        await _wait_blocked_by(db, arriving.get_server_pid())
        # A refund of it holds the person (its first lock) ...
        refund_tx = refund.transaction()
        await refund_tx.start()
        await refund.execute(
            "SELECT 1 FROM fund_accumulators WHERE ssn = $1 FOR UPDATE", card["ssn"]
        )
        await arriving_tx.commit()
        await _wait_blocked_by(db, refund.get_server_pid())
        # ... and then takes the purchase row: free, the reversal waits without it.
        await refund.execute(
            "SELECT 1 FROM transactions WHERE rrn = $1 FOR NO KEY UPDATE", bought.body["rrn"]
        )
        await refund_tx.rollback()
    finally:
        await arriving.close()
        await refund.close()
    _, reversal = await reversing
    assert reversal.body["response_code"] == "00", reversal.body
    assert await db.fetchval("SELECT reversed FROM transactions WHERE rrn = $1", bought.body["rrn"])
    assert (
        await db.fetchval(
            "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
        )
        == 100_000
    )
    assert await accumulators(db, card["ssn"]) == (0, 0)


async def test_a_refund_that_loses_the_race_to_a_reversal_is_12(
    patient_world: World, db, database_url: str
) -> None:
    """A refund that waited for a reversal of the same purchase finds it reversed: 12
    (the original is reversed), not 13, and no money moves."""
    terminal, card, body, bought = await _plain_purchase(patient_world)

    gate = await asyncpg.connect(database_url)
    try:
        # The reversal takes the purchase row, then waits here for the account.
        gate_tx = gate.transaction()
        await gate_tx.start()
        await gate.execute(
            "SELECT 1 FROM individual_accounts WHERE account_id = $1 FOR UPDATE",
            card["account_id"],
        )
        reversing = asyncio.create_task(terminal.transact("reversal", original_stan=body["stan"]))
        reversal_pid = await _wait_blocked_by(db, gate.get_server_pid())
        refunding = asyncio.create_task(
            terminal.transact("refund", original_rrn=bought.body["rrn"], amount=1250)
        )
        await _wait_blocked_by(db, reversal_pid)
        await gate_tx.rollback()
    finally:
        await gate.close()
    _, reversal = await reversing
    _, refund = await refunding
    assert reversal.body["response_code"] == "00", reversal.body
    assert refund.body["response_code"] == "12", refund.body
    row = await db.fetchrow(
        "SELECT reversed, refunded_amount FROM transactions WHERE rrn = $1", bought.body["rrn"]
    )
    assert (row["reversed"], row["refunded_amount"]) == (True, 0)
    assert (
        await db.fetchval(
            "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
        )
        == 10_000
    )


async def _pin_failures(db, card_id: int) -> int:
    return await db.fetchval("SELECT pin_failures FROM cards WHERE card_id = $1", card_id)


async def _group_commit_cards(world: World, db, n: int) -> tuple[str, str, list[dict]]:
    """n cards whose right-PIN try is counted (as claim_pin_try left it) and a terminal."""
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    cards = [await world.card(balance=10_000) for _ in range(n)]
    for card in cards:
        card["card_id"] = await db.fetchval(
            "UPDATE cards SET pin_failures = 1 WHERE pan = $1 RETURNING card_id", card["pan"]
        )
    return terminal.config.terminal_id, merchant, cards


def _good_pin(terminal_id: str, merchant_id: str, card: dict, stan: str) -> GoodPinRequest:
    return GoodPinRequest(
        key=RequestKey(terminal_id, date.today(), stan),
        request_hash=secrets.token_bytes(32),
        txn_type="purchase",
        merchant_id=merchant_id,
        card_id=card["card_id"],
        amount=100,
        auth_code="123456",
        pin_try=1,
    )


@contextlib.asynccontextmanager
async def _accounts_held(database_url: str, *cards: dict) -> AsyncIterator[int]:
    """Another connection holding these cards' account rows (as a write would) until the
    block ends; yields its backend pid."""
    gate = await asyncpg.connect(database_url)
    try:
        async with gate.transaction():
            await gate.execute(
                "SELECT 1 FROM individual_accounts WHERE account_id = ANY($1::bigint[]) FOR UPDATE",
                [card["account_id"] for card in cards],
            )
            yield gate.get_server_pid()
    finally:
        await gate.close()


async def test_right_pin_tries_come_back_when_a_group_commit_write_fails_on_the_server(
    world: World, db, database_url: str
) -> None:
    """A write the server refused (here: cancelled) rolled back: every caller, alone and
    in a batch, hears an error that store.nothing_written says was not written, and gives
    its right PIN's try back itself (services.transactions; tests/test_pin_try_release.py
    through the front door). The committer leaves the counts alone; nothing is recorded."""
    terminal_id, merchant, (alone, first, second) = await _group_commit_cards(world, db, 3)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    committer = GroupCommitter(pool, max_batch=8, flushers=1)
    try:
        async with _accounts_held(database_url, alone, second) as gate:
            writing = asyncio.create_task(
                committer.submit(_good_pin(terminal_id, merchant, alone, "000001"))
            )
            pid = await _wait_blocked_by(db, gate)
            batch = [
                asyncio.create_task(committer.submit(_good_pin(terminal_id, merchant, c, stan)))
                for c, stan in ((first, "000002"), (second, "000003"))
            ]
            await asyncio.sleep(0)  # both queued behind `alone`
            await db.execute("SELECT pg_cancel_backend($1)", pid)
            with pytest.raises(asyncpg.QueryCanceledError):
                await writing
            # The batch of the two waits for `second`'s account now.
            pid = await _wait_blocked_by(db, gate)
            await db.execute("SELECT pg_cancel_backend($1)", pid)
            outcomes = await asyncio.gather(*batch, return_exceptions=True)
            assert all(isinstance(o, asyncpg.QueryCanceledError) for o in outcomes), outcomes
    finally:
        await committer.close()
        await pool.close()
    assert all(store.nothing_written(o) for o in outcomes)
    assert [await _pin_failures(db, c["card_id"]) for c in (alone, first, second)] == [1, 1, 1]
    assert (
        await db.fetchval("SELECT count(*) FROM transactions WHERE terminal_id = $1", terminal_id)
        == 0
    )


async def test_right_pin_tries_come_back_for_requests_the_shutdown_drops(
    world: World, db, database_url: str
) -> None:
    """close() drops the queued requests unwritten: they hear NotWritten, as does a request
    refused after it, and their callers give their tries back (services.transactions;
    tests/test_pin_try_release.py). The batch being written may commit: its callers hear
    only that the gateway stops, and their tries stay."""
    terminal_id, merchant, (busy, queued, late) = await _group_commit_cards(world, db, 3)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    committer = GroupCommitter(pool, max_batch=8, flushers=1)
    try:
        async with _accounts_held(database_url, busy) as gate:
            writing = asyncio.create_task(
                committer.submit(_good_pin(terminal_id, merchant, busy, "000001"))
            )
            await _wait_blocked_by(db, gate)
            waiting = asyncio.create_task(
                committer.submit(_good_pin(terminal_id, merchant, queued, "000002"))
            )
            await asyncio.sleep(0)
            await committer.close()
            with pytest.raises(ConnectionError) as cut_off:
                await writing
            assert not isinstance(cut_off.value, NotWritten)
            with pytest.raises(NotWritten):
                await waiting
            with pytest.raises(NotWritten):
                await committer.submit(_good_pin(terminal_id, merchant, late, "000003"))
    finally:
        await pool.close()
    for card in (queued, late, busy):  # the committer itself gives nothing back
        assert await _pin_failures(db, card["card_id"]) == 1
    assert (
        await db.fetchval("SELECT count(*) FROM transactions WHERE terminal_id = $1", terminal_id)
        == 0
    )
