"""A right PIN's try is given back when the write that would have recorded its answer
certainly did not commit, on every write path (group commit, alone, itemised), and the
tries of cancelled requests are given back before the committer closes."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from datetime import date
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pos_gateway.app import create_app
from pos_gateway.http.state import SERVICES
from pos_gateway.services.group_commit import GroupCommitter
from pos_gateway.settings import Settings
from pos_gateway.store.transactions import GoodPinRequest, RequestKey
from terminal_sim.client import Terminal
from terminal_sim.protocol import StanCounter

from .conftest import World
from .test_settlement import catalogue, covered_card, items, set_policies

pytestmark = pytest.mark.usefixtures("ledger_clean")


def _on(client: TestClient, terminal: Terminal) -> Terminal:
    base_url = str(client.make_url("")).rstrip("/")
    return Terminal(client.session, base_url, terminal.config, StanCounter(1))


@pytest.mark.parametrize("path", ["group_commit", "alone", "itemised"])
async def test_a_right_pin_whose_write_is_refused_gives_its_try_back(
    path: str, aiohttp_client: Any, settings: Settings, world: World, db
) -> None:
    # The gateway's sessions give up on a row lock after 300 ms: the server refuses the
    # write, so it certainly did not commit (store.transactions.nothing_written).
    url = settings.database_url or ""
    impatient = dataclasses.replace(
        settings,
        database_url=f"{url}{'&' if '?' in url else '?'}lock_timeout=300",
        group_commit_max_batch=1 if path == "alone" else settings.group_commit_max_batch,
    )
    gateway = await aiohttp_client(create_app(impatient))
    terminal = _on(gateway, await world.terminal())
    fields: dict[str, Any] = {"amount": 100}
    if path == "itemised":
        await set_policies(world)
        codes = await catalogue(world)
        card = await covered_card(world)
        fields = {"amount": 1000, "items": items((codes["A"], 1, 1000))}
    else:
        card = await world.card(balance=10_000)

    async with db.transaction():
        # Every write path locks the account before it records the answer.
        await db.execute(
            "SELECT 1 FROM individual_accounts WHERE account_id = $1 FOR UPDATE",
            card["account_id"],
        )
        _, answer = await terminal.transact("purchase", pan=card["pan"], pin=card["pin"], **fields)

    assert answer.body["response_code"] == "96"
    assert await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"]) == 0
    assert await db.fetchval(
        "SELECT count(*) FROM transactions WHERE terminal_id = $1", terminal.config.terminal_id
    ) == 0  # fmt: skip


async def test_a_right_pin_the_stopping_committer_refuses_gives_its_try_back(
    world: World, client: TestClient, db
) -> None:
    """The gateway is stopping: the committer refuses the write (NotWritten), so the
    service gives the try back and the terminal hears 91."""
    terminal = await world.terminal()
    card = await world.card()
    await client.app[SERVICES].transactions._group_commit.close()

    _, answer = await terminal.transact("purchase", pan=card["pan"], pin=card["pin"], amount=100)

    assert answer.body["response_code"] == "91"
    assert await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"]) == 0


async def test_closing_waits_for_the_tries_of_cancelled_requests(
    world: World, db, database_url: str
) -> None:
    """A request cancelled while queued (its deadline passed) gives its try back on a task
    of the committer; close() waits for it, so none is lost when the pool closes next."""
    merchant = await world.merchant()
    terminal_id = (await world.terminal(merchant)).config.terminal_id
    busy, cancelled = await world.card(), await world.card()
    busy_id, cancelled_id = [
        await db.fetchval("SELECT card_id FROM cards WHERE pan = $1", c["pan"])
        for c in (busy, cancelled)
    ]
    # Its try was counted before the hash, as the service does.
    await db.execute("UPDATE cards SET pin_failures = 1 WHERE card_id = $1", cancelled_id)

    def request(card_id: int, stan: str) -> GoodPinRequest:
        return GoodPinRequest(
            RequestKey(terminal_id, date.today(), stan), secrets.token_bytes(32), "purchase",
            merchant, card_id, 100, "123456", 1,
        )  # fmt: skip

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    committer = GroupCommitter(pool, max_batch=256, flushers=1)
    closing = None
    try:
        async with db.transaction():
            # The flusher is held by the first card's account; the given-back try by the
            # second card's row.
            await db.execute(
                "SELECT 1 FROM individual_accounts WHERE account_id = $1 FOR UPDATE",
                busy["account_id"],
            )
            await db.execute("SELECT 1 FROM cards WHERE card_id = $1 FOR UPDATE", cancelled_id)
            writing = asyncio.create_task(committer.submit(request(busy_id, "000001")))
            await asyncio.sleep(0.2)
            waiting = asyncio.create_task(committer.submit(request(cancelled_id, "000002")))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            closing = asyncio.create_task(committer.close())
            await asyncio.sleep(0.3)
            still_giving_back = not closing.done()
        await asyncio.wait_for(closing, 10)
        failures = await db.fetchval(
            "SELECT pin_failures FROM cards WHERE card_id = $1", cancelled_id
        )
        with pytest.raises(ConnectionError):
            await writing  # cancelled mid-write by the close
    finally:
        if closing is None:
            await committer.close()
        await pool.close()

    assert still_giving_back
    assert failures == 0


@pytest.mark.parametrize("path", ["group_commit", "alone"])
async def test_a_right_pin_whose_write_lost_its_connection_gets_its_try_back(
    path: str, aiohttp_client: Any, settings: Settings, world: World, db
) -> None:
    """The write's connection is killed while it waits for a lock: whether it committed is
    unknown to the gateway (91), so the try is given back only once the database answers
    that the request's key was not recorded. Three such faults must not lock the card."""
    configured = dataclasses.replace(
        settings,
        group_commit_max_batch=1 if path == "alone" else settings.group_commit_max_batch,
    )
    gateway = await aiohttp_client(create_app(configured))
    terminal = _on(gateway, await world.terminal())
    card = await world.card(balance=10_000)

    for _ in range(3):
        async with db.transaction():
            await db.execute(
                "SELECT 1 FROM individual_accounts WHERE account_id = $1 FOR UPDATE",
                card["account_id"],
            )
            purchase = asyncio.create_task(
                terminal.transact("purchase", pan=card["pan"], pin=card["pin"], amount=100)
            )
            for _ in range(200):  # the write, blocked on the account's lock
                killed = await db.fetchval(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() "
                    "AND datname = current_database() LIMIT 1"
                )
                if killed:
                    break
                await asyncio.sleep(0.01)
            assert killed
        _, answer = await purchase
        assert answer.body["response_code"] == "91"
        for _ in range(100):  # given back in the background
            failures = await db.fetchval(
                "SELECT pin_failures FROM cards WHERE pan = $1", card["pan"]
            )
            if failures == 0:
                break
            await asyncio.sleep(0.05)
        assert failures == 0

    assert await db.fetchval(
        "SELECT count(*) FROM transactions WHERE terminal_id = $1", terminal.config.terminal_id
    ) == 0  # fmt: skip
    _, answer = await terminal.transact("purchase", pan=card["pan"], pin=card["pin"], amount=100)
    assert answer.body["response_code"] == "00"
