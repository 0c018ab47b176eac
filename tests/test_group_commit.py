"""Group commit: many good-PIN requests in one transaction, decided exactly."""

from __future__ import annotations

import asyncio
import secrets
from datetime import date

import asyncpg
import pytest

from pos_gateway.services.group_commit import (
    ContextReads,
    GroupCommitter,
    PinTryClaims,
    decide_good_pin,
)
from pos_gateway.store import transactions as store
from pos_gateway.store.transactions import DuplicateKey, GoodPinRequest, PinTry, RequestKey

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


async def test_claims_in_one_batch_count_as_one_by_one(world: World, db, database_url: str) -> None:
    """store.claim_pin_tries: each claim as claim_pin_try would count it; a taken key counts
    nothing, a card without tries left gets None."""
    terminal_id, merchant = await _terminal_ids(world)
    cards = [await world.card() for _ in range(3)]
    ids = [await _card_ids(db, c["pan"]) for c in cards]
    await db.execute("UPDATE cards SET pin_failures = 3 WHERE card_id = $1", ids[1])
    await db.execute("UPDATE cards SET pin_failures = 1 WHERE card_id = $1", ids[2])
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        stored = await store.record_good_pin(
            pool, _request(terminal_id, merchant, ids[0], None, "000001", "balance_inquiry"),
            decide_good_pin,
        )  # fmt: skip
        key = lambda stan: RequestKey(terminal_id, date.today(), stan)  # noqa: E731
        outcomes = await store.claim_pin_tries(
            pool, [(ids[0], key("000001")), (ids[1], key("000002")), (ids[2], key("000003"))], 3
        )
        with pytest.raises(ValueError):
            await store.claim_pin_tries(pool, [(ids[0], key("1")), (ids[0], key("2"))], 3)
    finally:
        await pool.close()

    assert stored.response_code == "00"
    assert isinstance(outcomes[0], DuplicateKey)
    assert outcomes[1] is None
    # The card and account as the claim found them: what its good-PIN write starts from.
    assert outcomes[2] == PinTry(tries=2, status="active", account_status="active", balance=10_000)
    failures = [
        await db.fetchval("SELECT pin_failures FROM cards WHERE card_id = $1", i) for i in ids
    ]
    assert failures == [0, 3, 2]


async def test_concurrent_claims_share_round_trips_one_card_at_a_time(
    world: World, db, database_url: str
) -> None:
    terminal_id, _ = await _terminal_ids(world)
    cards = [await world.card() for _ in range(6)]
    ids = [await _card_ids(db, c["pan"]) for c in cards]
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    claims = PinTryClaims(pool, max_failures=3)
    try:
        # Two claims on the first card: never in one batch, counted one after the other.
        wanted = [*ids, ids[0]]
        outcomes = await asyncio.gather(
            *(
                claims.claim(card_id, RequestKey(terminal_id, date.today(), f"{n:06d}"))
                for n, card_id in enumerate(wanted, start=1)
            )
        )
        batches, counted = claims.batches, claims.items
    finally:
        await claims.close()
        await pool.close()

    assert [claim.tries if claim else None for claim in outcomes] == [1, 1, 1, 1, 1, 1, 2]
    assert counted == 7 and batches < 7
    assert await db.fetchval("SELECT pin_failures FROM cards WHERE card_id = $1", ids[0]) == 2


async def test_a_claim_whose_caller_gave_up_is_given_back(
    world: World, db, database_url: str
) -> None:
    """Past its deadline while its try was being counted: nothing will record an answer,
    so the try goes back (and close() waits for that)."""
    terminal_id, _ = await _terminal_ids(world)
    card = await world.card()
    card_id = await _card_ids(db, card["pan"])
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    claims = PinTryClaims(pool, max_failures=3)
    try:
        async with db.transaction():
            await db.execute("SELECT 1 FROM cards WHERE card_id = $1 FOR UPDATE", card_id)
            claim = asyncio.create_task(
                claims.claim(card_id, RequestKey(terminal_id, date.today(), "000001"))
            )
            await asyncio.sleep(0.2)  # sent, waiting for the row
            claim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await claim
        await asyncio.sleep(0.2)
    finally:
        await claims.close()
        await pool.close()

    assert await db.fetchval("SELECT pin_failures FROM cards WHERE card_id = $1", card_id) == 0


async def test_contexts_read_together_are_each_as_read_alone(
    world: World, db, database_url: str
) -> None:
    terminal_id, _ = await _terminal_ids(world)
    cards = [await world.card() for _ in range(3)]
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    reads = ContextReads(pool)
    try:
        wanted: list[tuple[str, RequestKey | None, str | None]] = [
            (terminal_id, RequestKey(terminal_id, date.today(), f"{n:06d}"), c["pan"])
            for n, c in enumerate(cards, start=1)
        ]
        wanted += [("NOSUCHT1", None, None), (terminal_id, None, "6217000000000000000")]
        together = await asyncio.gather(*(reads.load(*w) for w in wanted))
        alone = [await store.load_context(pool, *w) for w in wanted]
        batches = reads.batches
    finally:
        await reads.close()
        await pool.close()

    assert batches < len(wanted)
    assert together[3] is None and alone[3] is None
    for a, b in zip(together, alone, strict=True):
        if a is None or b is None:
            continue
        assert a.card == b.card and a.stored == b.stored
        assert dict(a.terminal)["terminal_id"] == dict(b.terminal)["terminal_id"]
    assert [c.card["pan"] if c and c.card else None for c in together] == [
        *(c["pan"] for c in cards), None, None,
    ]  # fmt: skip
