"""PIN tries are counted in the database before the hash: two gateways on one database
(two apps, two pools, two per-card locks) still give a burst of wrong PINs on one card
at most three tries in total."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pos_gateway.app import create_app
from pos_gateway.http.state import SERVICES
from pos_gateway.settings import Settings
from pos_gateway.store import transactions as store
from pos_gateway.store.transactions import DuplicateKey, RequestKey
from terminal_sim.client import Terminal
from terminal_sim.protocol import StanCounter

from .conftest import World

pytestmark = pytest.mark.usefixtures("ledger_clean")


def _count_hashes(client: TestClient, counts: Counter, guard: threading.Lock) -> None:
    """Count real PIN-hash verifications, each slowed so that tries overlap."""
    pins = client.app[SERVICES].transactions._pins
    real_verify = pins.verify

    def verify(pin_hash: str, pin: str) -> bool:
        with guard:
            counts["hashes"] += 1
        time.sleep(0.05)
        return real_verify(pin_hash, pin)

    pins.verify = verify


def _on(client: TestClient, terminal: Terminal, stan: int) -> Terminal:
    base_url = str(client.make_url("")).rstrip("/")
    return Terminal(client.session, base_url, terminal.config, StanCounter(stan))


async def test_two_gateways_give_a_burst_of_wrong_pins_three_tries(
    aiohttp_client: Any, settings: Settings, world: World, client: TestClient, db
) -> None:
    other = await aiohttp_client(create_app(settings))
    counts: Counter = Counter()
    guard = threading.Lock()
    _count_hashes(client, counts, guard)
    _count_hashes(other, counts, guard)
    merchant = await world.merchant()
    terminals = [await world.terminal(merchant) for _ in range(8)]
    card = await world.card()
    # Half the terminals reach one gateway, half the other; every terminal tries twice.
    senders = [
        _on(client if i % 2 else other, terminal, 1 + 100 * i)
        for i, terminal in enumerate(terminals)
    ]

    answers = await asyncio.gather(
        *(
            s.transact("balance_inquiry", pan=card["pan"], pin="0000")
            for s in senders
            for _ in range(2)
        )
    )

    codes = Counter(answer.body["response_code"] for _, answer in answers)
    assert counts["hashes"] == 3  # the fourth try and every later one cost no hash
    assert codes == {"55": 2, "75": 14}
    failures = await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"])
    assert failures == 3
    _, right = await senders[0].transact("balance_inquiry", pan=card["pan"], pin="4321")
    assert right.body["response_code"] == "75"  # locked until a counter reset


async def test_a_right_pin_forgives_its_own_try_but_not_a_later_one(
    world: World, client: TestClient, db
) -> None:
    """A wrong try counted while a right one is being checked stays counted."""
    terminal = await world.terminal()
    card = await world.card(balance=1_000)
    pins = client.app[SERVICES].transactions._pins
    real_verify = pins.verify
    started = threading.Event()
    release = threading.Event()

    def verify(pin_hash: str, pin: str) -> bool:
        started.set()
        release.wait(10)
        return real_verify(pin_hash, pin)

    pins.verify = verify
    right = asyncio.create_task(
        terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    )
    await asyncio.to_thread(started.wait, 10)
    # Another process counts a wrong try on the card meanwhile.
    await db.execute("UPDATE cards SET pin_failures = pin_failures + 1 WHERE pan = $1", card["pan"])
    release.set()
    _, answer = await right

    assert answer.body["response_code"] == "00"
    failures = await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"])
    assert failures == 1


async def test_two_gateways_never_overdraw_one_card(
    aiohttp_client: Any, settings: Settings, world: World, client: TestClient, db
) -> None:
    """Each gateway decides on the card as it read it; the write finds out under the locks
    when the other one moved the balance, and decides again."""
    other = await aiohttp_client(create_app(settings))
    merchant = await world.merchant()
    terminals = [await world.terminal(merchant) for _ in range(8)]
    card = await world.card(balance=10_000)
    senders = [
        _on(client if i % 2 else other, terminal, 1 + 100 * i)
        for i, terminal in enumerate(terminals)
    ]

    answers = await asyncio.gather(
        *(
            s.transact("purchase", pan=card["pan"], pin="4321", amount=700)
            for s in senders
            for _ in range(5)
        )
    )

    codes = Counter(answer.body["response_code"] for _, answer in answers)
    assert codes == {"00": 14, "51": 26}  # 14 x 7.00 of 100.00 fit
    approved = sorted(a.body["balance"] for _, a in answers if a.body["response_code"] == "00")
    assert approved == [200 + 700 * i for i in range(14)]
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 200


async def test_a_try_is_counted_once_and_not_for_a_stored_request(
    world: World, db, database_url: str
) -> None:
    terminal = await world.terminal()
    card = await world.card()
    _, first = await terminal.transact("balance_inquiry", pan=card["pan"], pin="4321")
    card_id = await db.fetchval("SELECT card_id FROM cards WHERE pan = $1", card["pan"])
    local_date = await db.fetchval(
        "SELECT local_date FROM transactions WHERE rrn = $1", first.body["rrn"]
    )
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        fresh = RequestKey(terminal.config.terminal_id, local_date, "999999")
        claims = [await store.claim_pin_try(pool, card_id, fresh, 3) for _ in range(4)]
        tries = [claim.tries if claim else None for claim in claims]
        # The claim's own commit did not wait for the disk; the session still does.
        session_commit = await pool.fetchval("SHOW synchronous_commit")
        stored = RequestKey(terminal.config.terminal_id, local_date, first.body["stan"])
        with pytest.raises(DuplicateKey):
            await store.claim_pin_try(pool, card_id, stored, 3)
        await store.release_pin_try(pool, card_id)
    finally:
        await pool.close()

    assert tries == [1, 2, 3, None]
    assert session_commit == "on"
    assert await db.fetchval("SELECT pin_failures FROM cards WHERE card_id = $1", card_id) == 2
