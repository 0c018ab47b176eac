"""Money under concurrency: committed for real, many terminals, one card."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from pos_gateway.http.state import SERVICES

from .conftest import World

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def test_concurrent_purchases_never_overdraw(world: World, db) -> None:
    merchant = await world.merchant()
    terminals = [await world.terminal(merchant) for _ in range(8)]
    card = await world.card(balance=10_000)
    # 40 purchases of 7.00 CNY against 100.00: exactly 14 fit (98.00), 26 must be 51.
    requests = [
        terminals[i % len(terminals)].transact("purchase", pan=card["pan"], pin="4321", amount=700)
        for i in range(40)
    ]

    answers = await asyncio.gather(*requests)

    codes = Counter(answer.body["response_code"] for _, answer in answers)
    assert codes == {"00": 14, "51": 26}
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    journal_sum = await db.fetchval(
        "SELECT sum(amount) FROM journal WHERE account_id = $1", card["account_id"]
    )
    assert balance == 10_000 - 14 * 700 == 200
    assert journal_sum == balance
    approved_balances = sorted(
        answer.body["balance"] for _, answer in answers if answer.body["response_code"] == "00"
    )
    # Each approval saw its own debit: the balances after are all distinct steps of 7.00.
    assert approved_balances == [200 + 700 * i for i in range(14)]


async def test_concurrent_retransmissions_debit_once(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    body = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=1_500)

    answers = await asyncio.gather(*(terminal.send("/v1/transactions", body) for _ in range(10)))

    assert {a.body["response_code"] for a in answers} == {"00"}
    assert len({a.body["rrn"] for a in answers}) == 1
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 8_500


async def test_concurrent_wrong_pins_lock_after_exactly_three(world: World, db) -> None:
    merchant = await world.merchant()
    terminals = [await world.terminal(merchant) for _ in range(6)]
    card = await world.card()

    answers = await asyncio.gather(
        *(t.transact("balance_inquiry", pan=card["pan"], pin="0000") for t in terminals)
    )

    codes = Counter(answer.body["response_code"] for _, answer in answers)
    # PIN checks of one card take turns: exactly two tries are answered 55, then the
    # card is locked and every other try of the burst is 75.
    assert codes == {"55": 2, "75": 4}
    failures = await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"])
    assert failures == 3


async def test_pin_checks_of_one_card_take_turns(world: World, client) -> None:
    """A burst of guesses on one card is verified one at a time, each after the previous
    one is counted, so the third wrong PIN locks the card for the rest of the burst."""
    service = client.app[SERVICES].transactions
    real_verify = service._pins.verify
    guard = threading.Lock()
    running, most = 0, 0

    def watched_verify(pin_hash: str, pin: str) -> bool:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        try:
            return real_verify(pin_hash, pin)
        finally:
            with guard:
                running -= 1

    service._pins.verify = watched_verify
    merchant = await world.merchant()
    terminals = [await world.terminal(merchant) for _ in range(8)]
    card = await world.card()

    answers = await asyncio.gather(
        *(t.transact("balance_inquiry", pan=card["pan"], pin="0000") for t in terminals)
    )

    assert most == 1
    codes = Counter(answer.body["response_code"] for _, answer in answers)
    assert codes == {"55": 2, "75": 6}
