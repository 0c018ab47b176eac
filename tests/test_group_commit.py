"""Group commit: many good-PIN requests in one transaction, decided exactly."""

from __future__ import annotations

import asyncio
import secrets
from datetime import date

import asyncpg
import pytest

from pos_gateway.services.group_commit import GroupCommitter, decide_good_pin
from pos_gateway.store import transactions as store
from pos_gateway.store.transactions import DuplicateKey, GoodPinRequest, RequestKey

from .conftest import World

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def _card_ids(db, pan: str) -> int:
    return await db.fetchval("SELECT card_id FROM cards WHERE pan = $1", pan)


def _request(terminal_id: str, merchant_id: str, card_id: int, amount: int | None, stan: str,
             txn_type: str = "purchase") -> GoodPinRequest:  # fmt: skip
    return GoodPinRequest(
        key=RequestKey(terminal_id, date.today(), stan),
        request_hash=secrets.token_bytes(32),
        txn_type=txn_type,
        merchant_id=merchant_id,
        card_id=card_id,
        amount=amount,
        auth_code="123456",
        pin_try=1,
    )


async def _terminal_ids(world: World) -> tuple[str, str]:
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    return terminal.config.terminal_id, merchant


async def test_purchases_on_one_card_in_one_batch_are_decided_in_order(
    world: World, db, database_url: str
) -> None:
    terminal_id, merchant = await _terminal_ids(world)
    card = await world.card(balance=1_000)
    card_id = await _card_ids(db, card["pan"])
    requests = [
        _request(terminal_id, merchant, card_id, 400, "000001"),
        _request(terminal_id, merchant, card_id, 700, "000002"),  # does not fit after 400
        _request(terminal_id, merchant, card_id, None, "000003", "balance_inquiry"),
        _request(terminal_id, merchant, card_id, 600, "000004"),  # fits: 600 left
    ]
    conn = await asyncpg.connect(database_url)
    try:
        answers = await store.record_good_pin_batch(conn, requests, decide_good_pin)
    finally:
        await conn.close()

    assert [(a.response_code, a.balance) for a in answers] == [
        ("00", 600), ("51", None), ("00", 600), ("00", 0),
    ]  # fmt: skip
    lines = await db.fetch(
        "SELECT amount, balance_after FROM journal WHERE account_id = $1 ORDER BY entry_id",
        card["account_id"],
    )
    assert [(r["amount"], r["balance_after"]) for r in lines] == [
        (1_000, 1_000), (-400, 600), (-600, 0),
    ]  # fmt: skip
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 0


async def test_a_taken_key_rolls_the_whole_batch_back(world: World, db, database_url: str) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    card_id = await _card_ids(db, card["pan"])
    _, first = await terminal.transact(
        "purchase", pan=card["pan"], pin="4321", amount=100, stan="000009"
    )
    merchant = await db.fetchval(
        "SELECT merchant_id FROM terminals WHERE terminal_id = $1", terminal.config.terminal_id
    )
    taken = RequestKey(terminal.config.terminal_id, await _local_date(db, first), "000009")
    requests = [
        _request(terminal.config.terminal_id, merchant, card_id, 200, "000010"),
        GoodPinRequest(taken, b"x" * 32, "purchase", merchant, card_id, 300, "654321", 1),
    ]
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(DuplicateKey):
            await store.record_good_pin_batch(conn, requests, decide_good_pin)
    finally:
        await conn.close()

    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 4_900  # only the first purchase, made before the batch


async def _local_date(db, answer) -> date:
    return await db.fetchval(
        "SELECT local_date FROM transactions WHERE rrn = $1", answer.body["rrn"]
    )


async def test_committer_answers_each_request_and_dedupes_copies(
    world: World, db, database_url: str
) -> None:
    terminal_id, merchant = await _terminal_ids(world)
    card = await world.card(balance=10_000)
    card_id = await _card_ids(db, card["pan"])
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    committer = GroupCommitter(pool, max_batch=8, flushers=2)
    try:
        requests = [_request(terminal_id, merchant, card_id, 100, f"{n:06d}") for n in range(1, 21)]
        copy = requests[0]
        answers = await asyncio.gather(*(committer.submit(r) for r in [*requests, copy]))
    finally:
        await committer.close()
        await pool.close()

    assert [a.response_code for a in answers] == ["00"] * 21
    assert answers[-1] == answers[0]  # the copy got the original's answer
    assert sorted(a.balance for a in answers[:20]) == list(range(8_000, 10_000, 100))
    assert committer.requests == 20 and committer.batches >= 3  # batches of at most 8


async def test_closing_answers_every_waiting_request(world: World, db, database_url: str) -> None:
    terminal_id, merchant = await _terminal_ids(world)
    card = await world.card(balance=10_000)
    card_id = await _card_ids(db, card["pan"])
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    committer = GroupCommitter(pool, max_batch=4, flushers=1)
    try:
        waiting = [
            asyncio.create_task(
                committer.submit(_request(terminal_id, merchant, card_id, 100, f"{n:06d}"))
            )
            for n in range(1, 13)
        ]
        await asyncio.sleep(0)  # queued, and a first batch taken
        await committer.close()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*waiting, return_exceptions=True), timeout=10
        )
        with pytest.raises(ConnectionError):
            await committer.submit(_request(terminal_id, merchant, card_id, 100, "000099"))
    finally:
        await pool.close()

    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, ConnectionError)]
    assert len(answered) + len(refused) == 12
    recorded = await db.fetchval(
        "SELECT count(*) FROM transactions WHERE terminal_id = $1", terminal_id
    )
    # Every answered request is recorded. A refused one (91 to its terminal) is normally
    # not, but a batch cancelled just as its COMMIT went out may be: 91 means "reverse".
    assert len(answered) <= recorded <= 12


async def test_a_request_cancelled_while_queued_is_never_written(
    world: World, db, database_url: str
) -> None:
    """Past its deadline a request is answered 91; if no flusher has taken it yet it is
    dropped, so the terminal's 91 is the truth."""
    terminal_id, merchant = await _terminal_ids(world)
    card = await world.card(balance=5_000)
    card_id = await _card_ids(db, card["pan"])
    first = _request(terminal_id, merchant, card_id, 100, "000001")
    queued = _request(terminal_id, merchant, card_id, 200, "000002")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    committer = GroupCommitter(pool, max_batch=256, flushers=1)
    try:
        # Hold the account so the flusher is busy with `first` while `queued` waits.
        async with db.transaction():
            await db.execute(
                "SELECT 1 FROM individual_accounts WHERE account_id = $1 FOR UPDATE",
                card["account_id"],
            )
            writing = asyncio.create_task(committer.submit(first))
            await asyncio.sleep(0.2)
            waiting = asyncio.create_task(committer.submit(queued))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        answer = await asyncio.wait_for(writing, 30)
        await asyncio.sleep(0.2)  # the flusher looks at its queue again

        assert answer.response_code == "00"
        assert await store.find(pool, queued.key) is None
        assert await store.find(pool, first.key) is not None
    finally:
        await committer.close()
        await pool.close()
