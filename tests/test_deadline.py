"""A deadline on every terminal request: when the database goes silent (no RST), the
terminal hears 91 within POS_REQUEST_DEADLINE_S, requests queued behind the card lock or
the group-commit flusher too, /healthz says 503 within a second, and after the partition
the retransmission finds exactly what was committed."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from pos_gateway.app import create_app
from pos_gateway.services.deadline import DeadlineExceeded, within_deadline
from pos_gateway.settings import ConfigError, Settings

from .conftest import World
from .dbproxy import DatabaseProxy
from .test_settings import SECRETS_ENV

DEADLINE_S = 1.0
# Without the deadline a silent database holds a request for the whole command timeout
# (set long here); every bound below is far under it and far over the deadline.
COMMAND_TIMEOUT_S = 60.0
ANSWER_BOUND_S = DEADLINE_S + 9


@pytest.fixture
async def silent_world(aiohttp_client, settings: Settings, proxy: DatabaseProxy):
    app = create_app(
        dataclasses.replace(
            settings,
            database_url=proxy.dsn,
            request_deadline_s=DEADLINE_S,
            db_command_timeout_s=COMMAND_TIMEOUT_S,
        )
    )
    client = await aiohttp_client(app)
    return client, World(client, settings)


async def test_silent_database_answers_91_within_the_deadline_for_queued_requests_too(
    silent_world, proxy: DatabaseProxy, ledger_clean
) -> None:
    client, world = silent_world
    merchant = await world.merchant()
    terminals = [await world.terminal(merchant) for _ in range(4)]
    card = await world.card(balance=10_000)
    other = await world.card(balance=10_000)

    proxy.go_silent()
    started = time.monotonic()
    # Three on one card (queued behind its lock) and one on another card.
    sent = await asyncio.gather(
        *(t.transact("purchase", pan=card["pan"], pin="4321", amount=100) for t in terminals[:3]),
        terminals[3].transact("purchase", pan=other["pan"], pin="4321", amount=100),
    )
    elapsed = time.monotonic() - started
    health_started = time.monotonic()
    health = await client.get("/healthz")
    health_elapsed = time.monotonic() - health_started
    proxy.heal()

    assert [answer.body["response_code"] for _, answer in sent] == ["91"] * 4
    assert all(answer.status == 200 for _, answer in sent)
    assert elapsed < ANSWER_BOUND_S
    assert health.status == 503
    assert health_elapsed < ANSWER_BOUND_S

    # Healed: each terminal retransmits the same bytes and hears the one outcome there is.
    retransmitted = [
        await t.send("/v1/transactions", body) for t, (body, _) in zip(terminals, sent, strict=True)
    ]
    codes = [answer.body["response_code"] for answer in retransmitted]
    assert set(codes) <= {"00", "91"}, codes
    for _ in range(20):  # bounded: the held statements drain when the link heals
        if "91" not in codes:
            break
        await asyncio.sleep(0.5)
        retransmitted = [
            await t.send("/v1/transactions", body)
            for t, (body, _) in zip(terminals, sent, strict=True)
        ]
        codes = [answer.body["response_code"] for answer in retransmitted]
    assert codes == ["00"] * 4, codes
    balances = {}
    for pan in (card["pan"], other["pan"]):
        resp = await client.get(f"/v1/admin/cards/{pan}", headers=world.headers)
        balances[pan] = (await resp.json())["balance"]
    # Debited once per request, whether the first try committed behind its 91 or not.
    assert balances == {card["pan"]: 9_700, other["pan"]: 9_900}
    assert (await client.get("/healthz")).status == 200


async def test_work_past_the_deadline_is_cancelled_behind_the_answer() -> None:
    finished = asyncio.Event()
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            # Clean-up that itself hangs (a rollback on a silent link) must not hold the
            # answer.
            cancelled.set()
            await asyncio.sleep(0.2)
            finished.set()
            raise

    with pytest.raises(DeadlineExceeded):
        await within_deadline(hangs(), 0.05)
    assert not finished.is_set()
    await asyncio.wait_for(cancelled.wait(), 5)
    await asyncio.wait_for(finished.wait(), 5)


async def test_work_within_the_deadline_returns_its_result_or_error() -> None:
    async def answer() -> int:
        return 42

    async def fails() -> None:
        raise ValueError("bad")

    assert await within_deadline(answer(), 5) == 42
    with pytest.raises(ValueError, match="bad"):
        await within_deadline(fails(), 5)


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "nan"])
def test_request_deadline_setting_is_validated(raw: str, tmp_path) -> None:
    with pytest.raises(ConfigError, match="POS_REQUEST_DEADLINE_S"):
        Settings.from_env(
            {**SECRETS_ENV, "POS_DATA_DIR": str(tmp_path), "POS_REQUEST_DEADLINE_S": raw}
        )


def test_request_deadline_defaults_to_three_seconds(tmp_path) -> None:
    env = {**SECRETS_ENV, "POS_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).request_deadline_s == 3.0
    assert Settings.from_env({**env, "POS_REQUEST_DEADLINE_S": "0.5"}).request_deadline_s == 0.5


async def test_an_iso_request_past_the_deadline_is_answered_91_and_its_retransmission_00(
    aiohttp_client, settings: Settings, proxy: DatabaseProxy, ledger_clean
) -> None:
    from pos_gateway.app import ISO_LISTENER
    from terminal_sim.iso import IsoConnection, IsoTerminal
    from terminal_sim.protocol import StanCounter, local_time, pin_block

    app = create_app(
        dataclasses.replace(
            settings,
            database_url=proxy.dsn,
            request_deadline_s=DEADLINE_S,
            db_command_timeout_s=COMMAND_TIMEOUT_S,
            iso_port=0,
        )
    )
    client = await aiohttp_client(app)
    world = World(client, settings)
    http = await world.terminal()
    card = await world.card(balance=10_000)
    connection = IsoConnection("127.0.0.1", app[ISO_LISTENER].port)
    terminal = IsoTerminal(connection, http.config, StanCounter(1), timeout_s=30)
    now = local_time()
    fields = {
        "t": "0200", "3": "000000", "2": card["pan"], "4": "000000001250", "49": "156",
        "11": "000042", "12": now[11:19].replace(":", ""), "13": now[5:10].replace("-", ""),
        "52": pin_block(http.config.pin_key, card["pin"], card["pan"]).upper(),
    }  # fmt: skip
    try:
        proxy.go_silent()
        started = time.monotonic()
        answer = await terminal.exchange(fields)
        elapsed = time.monotonic() - started
        proxy.heal()
        assert (answer["t"], answer["39"]) == ("0210", "91")
        assert elapsed < ANSWER_BOUND_S
        # Before the terminal could be authenticated (its key is in the silent database):
        # unsigned, so it carries only what an unauthenticated answer does (DESIGN §9).
        assert answer["mac"] == "bad" and "64" not in answer
        assert set(answer) - {"p", "mac"} == {"t", "11", "39", "41"}, answer
        for _ in range(20):  # bounded: the held statements drain when the link heals
            answer = await terminal.exchange(fields)
            if answer["39"] != "91":
                break
            await asyncio.sleep(0.5)
        assert answer["39"] == "00" and "mac" not in answer
    finally:
        await connection.close()
    resp = await client.get(f"/v1/admin/cards/{card['pan']}", headers=world.headers)
    assert (await resp.json())["balance"] == 10_000 - 1250


async def test_an_iso_batch_close_past_the_deadline_after_authentication_gets_a_maced_91(
    aiohttp_client, settings: Settings, db
) -> None:
    """The terminal was authenticated (its key read) before the close waited past the
    deadline: its 91 carries a MAC (DESIGN §9: only an answer to a request that failed
    authentication has none). JSON answers 503 as before."""
    from pos_gateway.app import ISO_LISTENER
    from terminal_sim.iso import IsoConnection, IsoTerminal
    from terminal_sim.protocol import StanCounter

    app = create_app(dataclasses.replace(settings, request_deadline_s=DEADLINE_S, iso_port=0))
    client = await aiohttp_client(app)
    world = World(client, settings)
    http = await world.terminal()
    connection = IsoConnection("127.0.0.1", app[ISO_LISTENER].port)
    terminal = IsoTerminal(connection, http.config, StanCounter(1), timeout_s=30)
    close = {"t": "0500", "3": "920000", "11": "000077", "60": "000001",
             "74": "0" * 10, "76": "0" * 10, "86": "0" * 16, "88": "0" * 16}  # fmt: skip
    try:
        # A close waits for the terminal row (FOR UPDATE); authentication only reads it.
        async with db.transaction():
            await db.execute(
                "SELECT 1 FROM terminals WHERE terminal_id = $1 FOR UPDATE",
                http.config.terminal_id,
            )
            answer = await terminal.exchange(close)
            json_close = await http.send(
                "/v1/batches/close",
                {"batch_no": 1, "purchases": {"count": 0, "amount": 0},
                 "refunds": {"count": 0, "amount": 0}},
            )  # fmt: skip
        assert (answer["t"], answer["39"], answer["11"]) == ("0510", "91", "000077")
        assert "mac" not in answer, answer  # present and good
        assert json_close.status == 503
        sign_on = await terminal.sign_on()  # and the listener goes on
        assert sign_on["39"] == "00" and "mac" not in sign_on
    finally:
        await connection.close()
