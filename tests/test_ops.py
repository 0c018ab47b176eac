"""Health, metrics, and answering fast when the database is gone."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from pos_gateway.app import create_app
from pos_gateway.security.pins import Argon2Params
from pos_gateway.settings import Settings

from .conftest import World
from .dbproxy import DatabaseProxy


async def test_healthz_is_ok_with_a_database(client) -> None:
    resp = await client.get("/healthz")

    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_metrics_count_transactions_by_type_and_code(world: World, client) -> None:
    terminal = await world.terminal()
    card = await world.card()
    await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    await terminal.transact("purchase", pan=card["pan"], pin="0000", amount=100)

    resp = await client.get("/metrics")
    text = await resp.text()

    assert resp.status == 200
    assert 'pos_transactions_total{response_code="00",transport="http",type="purchase"} 1.0' in text
    assert 'pos_transactions_total{response_code="55",transport="http",type="purchase"} 1.0' in text
    assert "pos_pin_verify_seconds_count 2.0" in text
    assert 'pos_transaction_seconds_count{transport="http",type="purchase"} 2.0' in text


async def test_database_down_answers_91_fast_and_healthz_503(
    aiohttp_client, settings: Settings, proxy: DatabaseProxy
) -> None:
    app = create_app(dataclasses.replace(settings, database_url=proxy.dsn))
    client = await aiohttp_client(app)
    world = World(client, settings)
    terminal = await world.terminal()
    card = await world.card()

    await proxy.cut()
    started = time.monotonic()
    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    elapsed = time.monotonic() - started
    health = await client.get("/healthz")

    assert answer.status == 200
    assert answer.body["response_code"] == "91"
    assert answer.body["approved"] is False
    # Bounded by the connect timeout (2 s), not by a hang; generous for a loaded machine.
    assert elapsed < settings.db_connect_timeout_s + 3
    assert health.status == 503


async def test_gateway_recovers_when_the_database_returns(
    aiohttp_client, settings: Settings, proxy: DatabaseProxy
) -> None:
    app = create_app(dataclasses.replace(settings, database_url=proxy.dsn))
    client = await aiohttp_client(app)
    world = World(client, settings)
    terminal = await world.terminal()
    card = await world.card(balance=1_000)

    await proxy.cut()
    _, down = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    await proxy.start()  # same port again
    _, up = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert down.body["response_code"] == "91"
    assert up.body["response_code"] == "00"
    assert up.body["balance"] == 900


async def test_requests_beyond_the_pin_queue_are_shed_with_91_and_not_recorded(
    aiohttp_client, settings: Settings, db
) -> None:
    # Slow enough (~0.1 s a check) that the burst arrives while the first PIN is hashed.
    slow_hash = Argon2Params(time_cost=4, memory_cost_kib=32768, parallelism=1)
    app = create_app(
        dataclasses.replace(settings, argon2=slow_hash, pin_threads=1, pin_queue_max=1)
    )
    client = await aiohttp_client(app)
    world = World(client, settings)
    merchant = await world.merchant()
    terminals = [await world.terminal(merchant) for _ in range(8)]
    card = await world.card(balance=100_000)

    answers = await asyncio.gather(
        *(t.transact("purchase", pan=card["pan"], pin="4321", amount=100) for t in terminals)
    )

    codes = [answer.body["response_code"] for _, answer in answers]
    recorded = await db.fetchval(
        "SELECT count(*) FROM transactions WHERE terminal_id = ANY($1::text[])",
        [t.config.terminal_id for t in terminals],
    )
    assert "91" in codes and "00" in codes
    assert recorded == codes.count("00")
    metrics = await (await client.get("/metrics")).text()
    assert f"pos_shed_total {float(codes.count('91'))}" in metrics
