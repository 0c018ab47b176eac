"""One decision for a good PIN, whichever way it is written (domain/decisions.py): the
whole card-state grid through the lone write, through a group-commit batch and through
the per-person write path of §10 (store/settlement.py: a plain purchase under a policy,
an itemised one) gives the same codes, balances and PIN counters; the daily limits
(61, 65) are decided by the same function on every path that has them."""

from __future__ import annotations

import itertools
import secrets
from datetime import date

import asyncpg
import pytest

from pos_gateway.domain.decisions import Code, DailyUse, decide_after_pin
from pos_gateway.domain.split import Accumulators, decide_settlement
from pos_gateway.services.group_commit import decide_good_pin
from pos_gateway.services.transactions import decide_itemised
from pos_gateway.store import settlement
from pos_gateway.store import transactions as store
from pos_gateway.store.transactions import GoodPinRequest, RequestKey

from .conftest import World
from .insurance_helpers import business_today
from .test_settlement import set_policies

AMOUNT = 500
GRID = list(
    itertools.product(
        ("active", "lost"),  # card status
        (0, 1, 2, 3),  # PIN failures when the good PIN is written (this try was the first)
        ("active", "frozen"),  # account status
        (AMOUNT - 100, AMOUNT, AMOUNT + 100),  # balance below, at, above the amount
        ("purchase", "balance_inquiry"),
    )
)


async def _card_in_state(world: World, db, state: tuple) -> tuple[int, int]:
    card_status, failures, account_status, balance, _ = state
    card = await world.card(balance=balance)
    card_id = await db.fetchval(
        "UPDATE cards SET status = $2, pin_failures = $3 WHERE pan = $1 RETURNING card_id",
        card["pan"], card_status, failures,
    )  # fmt: skip
    await db.execute(
        "UPDATE individual_accounts SET status = $2 WHERE account_id = $1",
        card["account_id"], account_status,
    )  # fmt: skip
    return card_id, card["account_id"]


async def _after(db, card_id: int, account_id: int) -> tuple[int, int]:
    failures = await db.fetchval("SELECT pin_failures FROM cards WHERE card_id = $1", card_id)
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", account_id
    )
    return failures, balance


def _seen(state: tuple, stale: bool) -> dict:
    """The card as the lone writer last read it: right, or wrong in every respect (it then
    finds out under the locks and decides again)."""
    card_status, failures, account_status, balance, _ = state
    if not stale:
        return {"status": card_status, "pin_failures": failures,
                "account_status": account_status, "balance": balance}  # fmt: skip
    return {
        "status": "lost" if card_status == "active" else "active",
        "pin_failures": (failures + 1) % 4,
        "account_status": "frozen" if account_status == "active" else "active",
        "balance": balance + 7,
    }


PATHS = ("lone", "lone_stale", "batch")


@pytest.mark.usefixtures("ledger_clean")
async def test_lone_and_batched_writes_decide_the_whole_grid_alike(
    world: World, db, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = await world.terminal()
    tid = terminal.config.terminal_id
    merchant = await db.fetchval("SELECT merchant_id FROM terminals WHERE terminal_id = $1", tid)
    cards = {path: [await _card_in_state(world, db, state) for state in GRID] for path in PATHS}

    def request(n: int, path: str) -> GoodPinRequest:
        txn_type = GRID[n][4]
        return GoodPinRequest(
            key=RequestKey(tid, date.today(), f"{n + 200 * PATHS.index(path):06d}"),
            request_hash=secrets.token_bytes(32),
            txn_type=txn_type,
            merchant_id=merchant,
            card_id=cards[path][n][0],
            amount=AMOUNT if txn_type == "purchase" else None,
            auth_code="123456",
            pin_try=1,
            seen=None if path == "batch" else _seen(GRID[n], path == "lone_stale"),
        )

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        batch_write = store.record_good_pin_batch

        def no_batch(*args: object) -> None:
            raise AssertionError("a lone request went the batch way")

        # A lone request is written by its own single statement, stale or not.
        monkeypatch.setattr(store, "record_good_pin_batch", no_batch)
        answers = {
            path: [
                await store.record_good_pin(pool, request(n, path), decide_good_pin)
                for n in range(len(GRID))
            ]
            for path in ("lone", "lone_stale")
        }
        async with pool.acquire() as conn:
            answers["batch"] = await batch_write(
                conn, [request(n, "batch") for n in range(len(GRID))], decide_good_pin
            )
    finally:
        await pool.close()

    for n, state in enumerate(GRID):
        outcomes = {
            path: (answers[path][n].response_code, answers[path][n].balance,
                   answers[path][n].amount, await _after(db, *cards[path][n]))
            for path in PATHS
        }  # fmt: skip
        assert outcomes["lone"] == outcomes["lone_stale"] == outcomes["batch"], state
    # The grid reaches every answer a good PIN can get.
    assert {a.response_code for a in answers["batch"]} == {"00", "41", "51", "62"}


@pytest.mark.parametrize("state", GRID)
def test_the_decision_of_each_grid_state(state: tuple) -> None:
    card_status, failures, account_status, balance, txn_type = state
    outcome = decide_after_pin(
        txn_type=txn_type,
        amount=AMOUNT if txn_type == "purchase" else None,
        card_status=card_status,
        pin_failures=failures,
        pin_try=1,
        account_status=account_status,
        balance=balance,
    )
    if card_status != "active":
        expected = Code.LOST_CARD
    elif account_status != "active":
        expected = Code.RESTRICTED_CARD
    elif txn_type == "purchase" and balance < AMOUNT:
        expected = Code.INSUFFICIENT_FUNDS
    else:
        expected = Code.APPROVED
    assert outcome.code == expected
    debited = expected == Code.APPROVED and txn_type == "purchase"
    assert outcome.balance == balance - (AMOUNT if debited else 0)
    # The right PIN forgives its own try and those before; a try counted after it stays.
    assert outcome.pin_failures == max(0, failures - 1)


# The per-person path (DESIGN §10) -------------------------------------------------------

# Purchases only: a balance inquiry never takes it. The itemised purchase with lines is
# compared where the account can pay it all (below that, the rest is cash and it is 00).
PURCHASES = [state for state in GRID if state[4] == "purchase"]
STANDING = list(itertools.product(("active", "lost"), (0, 1, 2, 3), ("active", "frozen")))


async def _policies(world: World, **limits: dict) -> None:
    """This test's policies for the business year (tests set the policy they rely on; the
    test puts back the usual ones, without limits, with set_policies)."""
    base = {"year": business_today().year, "deductible": 0, "fund_ratio_bp": 0,
            "annual_cap": 0}  # fmt: skip
    await world.admin("/v1/admin/policies", {"policies": [
        {**base, "merchant_kind": kind, **limits.get(kind, {})}
        for kind in ("pharmacy", "hospital")
    ]})  # fmt: skip


async def _item_code(world: World) -> str:
    code = f"GRID-{secrets.token_hex(4).upper()}"
    await world.admin("/v1/admin/catalogue", {"items": [
        {"code": code, "name": "Grid item", "category": "A"},
    ]})  # fmt: skip
    return code


def _itemised(tid: str, stan: int, merchant: str, card_id: int, items, pin_try: int = 1,
              amount: int = AMOUNT) -> settlement.ItemisedRequest:  # fmt: skip
    return settlement.ItemisedRequest(
        RequestKey(tid, date.today(), f"{stan:06d}"), secrets.token_bytes(32), "purchase",
        merchant, card_id, amount, items, None, "123456", pin_try, business_today(),
    )  # fmt: skip


PATHS_PER_PERSON = ("lone", "plain", "itemised")


async def _per_person_grid(world: World, db, database_url: str) -> tuple[dict, dict]:
    code = await _item_code(world)
    terminal = await world.terminal()
    tid = terminal.config.terminal_id
    merchant = await db.fetchval("SELECT merchant_id FROM terminals WHERE terminal_id = $1", tid)
    cards = {path: [await _card_in_state(world, db, state) for state in PURCHASES]
             for path in PATHS_PER_PERSON}  # fmt: skip
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        answers: dict[str, list] = {path: [] for path in PATHS_PER_PERSON}
        for n, state in enumerate(PURCHASES):
            card_id = cards["lone"][n][0]
            answers["lone"].append(await store.record_good_pin(pool, GoodPinRequest(
                RequestKey(tid, date.today(), f"{n:06d}"), secrets.token_bytes(32),
                "purchase", merchant, card_id, AMOUNT, "123456", 1, _seen(state, False),
            ), decide_good_pin))  # fmt: skip
            plain = _itemised(tid, 100 + n, merchant, cards["plain"][n][0], None)
            stored, split = await settlement.record_itemised(pool, plain, decide_itemised)
            assert split is None
            answers["plain"].append(stored)
            lines = ((code, 1, AMOUNT),)
            itemised = _itemised(tid, 200 + n, merchant, cards["itemised"][n][0], lines)
            stored, split = await settlement.record_itemised(pool, itemised, decide_itemised)
            assert (split is not None) == (stored.response_code == "00")
            answers["itemised"].append(stored)
    finally:
        await pool.close()
    return answers, cards


@pytest.mark.usefixtures("ledger_clean")
async def test_the_per_person_path_decides_the_grid_as_the_lone_write(
    world: World, db, database_url: str
) -> None:
    await _policies(world)  # no limits: the plain purchase is decided as a lone one
    try:
        answers, cards = await _per_person_grid(world, db, database_url)
    finally:
        await set_policies(world)
    for n, state in enumerate(PURCHASES):
        outcomes = {
            path: (answers[path][n].response_code, answers[path][n].balance,
                   answers[path][n].amount, await _after(db, *cards[path][n]))
            for path in PATHS_PER_PERSON
        }  # fmt: skip
        assert outcomes["lone"] == outcomes["plain"], state
        if state[3] >= AMOUNT:
            assert outcomes["lone"] == outcomes["itemised"], state
        else:  # the account pays what it has, the rest is cash; the PIN count is alike
            assert outcomes["lone"][3][0] == outcomes["itemised"][3][0], state
    assert {a.response_code for a in answers["plain"]} == {"00", "41", "51", "62"}


@pytest.mark.usefixtures("ledger_clean")
async def test_daily_limits_on_the_per_person_path_after_card_and_account_standing(
    world: World, db, database_url: str
) -> None:
    """61 at a pharmacy (amount limit below the purchase), 65 at a hospital (count limit
    1, one purchase already today), through the plain and the itemised write, for every
    card status x PIN failures x account status: lost 41 and frozen 62 come first, and
    the good PIN forgives its own try whatever the answer."""
    code = await _item_code(world)
    stan = itertools.count(1)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await _policies(world, pharmacy={"daily_amount_limit": AMOUNT - 1},
                        hospital={"daily_count_limit": 1})  # fmt: skip
        for kind, limit_code in (("pharmacy", Code.EXCEEDS_AMOUNT_LIMIT),
                                 ("hospital", Code.EXCEEDS_COUNT_LIMIT)):  # fmt: skip
            terminal = await world.terminal(kind=kind)
            tid = terminal.config.terminal_id
            merchant = await db.fetchval(
                "SELECT merchant_id FROM terminals WHERE terminal_id = $1", tid
            )
            for (card_status, failures, account_status), items in itertools.product(
                STANDING, (None, ((code, 1, AMOUNT),))
            ):
                card_id, account_id = await _card_in_state(
                    world, db, ("active", 0, "active", AMOUNT + 100, "purchase")
                )
                if kind == "hospital":  # the day's one purchase (no PIN checked: pin_try 0)
                    first = _itemised(tid, next(stan), merchant, card_id, None, 0, 100)
                    stored, _ = await settlement.record_itemised(pool, first, decide_itemised)
                    assert stored.response_code == "00"
                await db.execute(
                    "UPDATE cards SET status = $2, pin_failures = $3 WHERE card_id = $1",
                    card_id, card_status, failures,
                )  # fmt: skip
                await db.execute(
                    "UPDATE individual_accounts SET status = $2 WHERE account_id = $1",
                    account_id, account_status,
                )  # fmt: skip
                before = await _after(db, card_id, account_id)
                request = _itemised(tid, next(stan), merchant, card_id, items)
                stored, split = await settlement.record_itemised(pool, request, decide_itemised)
                if card_status != "active":
                    expected = Code.LOST_CARD
                elif account_status != "active":
                    expected = Code.RESTRICTED_CARD
                else:
                    expected = limit_code
                state = (kind, card_status, failures, account_status, items is not None)
                assert (stored.response_code, split) == (expected.value, None), state
                assert await _after(db, card_id, account_id) == (max(0, failures - 1), before[1]), (
                    state
                )
    finally:
        await pool.close()
        await set_policies(world)


DAILY = {
    "none": DailyUse(),
    "count_reached": DailyUse(count=2, count_limit=2),
    "amount_over": DailyUse(amount=1, amount_limit=AMOUNT),
}


@pytest.mark.parametrize("daily", DAILY)
@pytest.mark.parametrize("state", PURCHASES)
def test_the_limits_in_the_one_decision_of_each_grid_state(state: tuple, daily: str) -> None:
    """decide_after_pin with the day, and decide_settlement of a plain purchase (which
    must be nothing but that call), for every purchase state of the grid."""
    card_status, failures, account_status, balance, _ = state
    standing = dict(card_status=card_status, pin_failures=failures, pin_try=1,
                    account_status=account_status, balance=balance)  # fmt: skip
    after = decide_after_pin(txn_type="purchase", amount=AMOUNT, daily=DAILY[daily], **standing)
    plain = decide_settlement(
        txn_type="purchase", lines=None, amount=AMOUNT, covered=False, policy=None,
        used=Accumulators(), account_max=None, daily=DAILY[daily], **standing,
    )  # fmt: skip
    if card_status != "active":
        expected = Code.LOST_CARD
    elif account_status != "active":
        expected = Code.RESTRICTED_CARD
    elif daily == "count_reached":
        expected = Code.EXCEEDS_COUNT_LIMIT
    elif daily == "amount_over":
        expected = Code.EXCEEDS_AMOUNT_LIMIT
    elif balance < AMOUNT:
        expected = Code.INSUFFICIENT_FUNDS
    else:
        expected = Code.APPROVED
    assert after.code == plain.code == expected
    debited = AMOUNT if expected == Code.APPROVED else 0
    assert after.balance == plain.balance == balance - debited
    assert after.pin_failures == plain.pin_failures == max(0, failures - 1)
