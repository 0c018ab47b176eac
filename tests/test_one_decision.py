"""One decision for a good PIN, whichever way it is written (domain/decisions.py): the
whole card-state grid through the lone write and through a group-commit batch gives the
same codes, balances and PIN counters."""

from __future__ import annotations

import itertools
import secrets
from datetime import date

import asyncpg
import pytest

from pos_gateway.domain.decisions import Code, decide_after_pin
from pos_gateway.services.group_commit import decide_good_pin
from pos_gateway.store import transactions as store
from pos_gateway.store.transactions import GoodPinRequest, RequestKey

from .conftest import World

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
