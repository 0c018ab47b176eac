"""Refunds, reversals and batch close (DESIGN §4, §6)."""

from __future__ import annotations

import asyncio

import pytest

from terminal_sim.client import Terminal

from .conftest import World

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def _balance(db, account_id: int) -> int:
    return await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", account_id
    )


async def _buy(terminal: Terminal, card: dict, amount: int) -> dict:
    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=amount)
    assert answer.body["response_code"] == "00", answer.body
    return answer.body


async def _refund(terminal: Terminal, rrn: str, amount: int, **extra) -> dict:
    _, answer = await terminal.transact("refund", original_rrn=rrn, amount=amount, **extra)
    assert answer.status == 200, answer.body
    return answer.body


async def test_partial_refunds_up_to_the_original(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    bought = await _buy(terminal, card, 3_000)

    first = await _refund(terminal, bought["rrn"], 1_000)
    second = await _refund(terminal, bought["rrn"], 2_000)
    too_much = await _refund(terminal, bought["rrn"], 1)

    assert (first["response_code"], first["balance"]) == ("00", 8_000)
    assert (second["response_code"], second["balance"]) == ("00", 10_000)
    assert too_much["response_code"] == "13"
    assert await _balance(db, card["account_id"]) == 10_000
    kinds = await db.fetch(
        "SELECT kind, amount FROM journal WHERE account_id = $1 ORDER BY entry_id",
        card["account_id"],
    )
    assert [(r["kind"], r["amount"]) for r in kinds][-2:] == [("refund", 1_000), ("refund", 2_000)]


async def test_refund_above_the_original_is_13(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    bought = await _buy(terminal, card, 500)

    assert (await _refund(terminal, bought["rrn"], 501))["response_code"] == "13"


async def test_refund_at_another_merchant_is_12(world: World) -> None:
    here = await world.terminal()
    elsewhere = await world.terminal()
    card = await world.card(balance=10_000)
    bought = await _buy(here, card, 500)

    assert (await _refund(elsewhere, bought["rrn"], 500))["response_code"] == "12"


async def test_refund_of_unknown_or_declined_original_is_12(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=100)
    _, declined = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=500)
    assert declined.body["response_code"] == "51"

    assert (await _refund(terminal, declined.body["rrn"], 100))["response_code"] == "12"
    assert (await _refund(terminal, "999999999999", 100))["response_code"] == "12"


async def test_refund_with_another_cards_pan_is_12(world: World) -> None:
    terminal = await world.terminal()
    card, other = await world.card(balance=1_000), await world.card()
    bought = await _buy(terminal, card, 500)

    answer = await _refund(terminal, bought["rrn"], 100, pan=other["pan"])

    assert answer["response_code"] == "12"


async def test_reversal_restores_the_balance_exactly_once(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    bought = await _buy(terminal, card, 2_500)

    _, first = await terminal.transact("reversal", original_stan=bought["stan"])
    _, again = await terminal.transact("reversal", original_stan=bought["stan"])

    assert (first.body["response_code"], first.body["amount"]) == ("00", 2_500)
    assert first.body["balance"] == 10_000
    assert (again.body["response_code"], again.body["amount"]) == ("00", 0)
    assert await _balance(db, card["account_id"]) == 10_000


async def test_reversal_of_declined_or_unknown_request_changes_nothing(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=100)
    _, declined = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=500)

    _, of_declined = await terminal.transact("reversal", original_stan=declined.body["stan"])

    assert (of_declined.body["response_code"], of_declined.body["amount"]) == ("00", 0)
    assert await _balance(db, card["account_id"]) == 100


async def test_reversal_before_its_original_blocks_it(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    original = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=900)

    _, reversal = await terminal.transact("reversal", original_stan=original["stan"])
    late = await terminal.send("/v1/transactions", original)
    later = await terminal.send("/v1/transactions", original)

    assert reversal.body["response_code"] == "00"
    assert late.body["response_code"] == "12" and late.body["approved"] is False
    assert later.body == late.body
    assert await _balance(db, card["account_id"]) == 10_000


async def test_reversal_of_a_purchase_with_a_refund_is_12_and_changes_nothing(
    world: World, db
) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    bought = await _buy(terminal, card, 4_000)
    await _refund(terminal, bought["rrn"], 1_500)

    _, reversal = await terminal.transact("reversal", original_stan=bought["stan"])
    refund_after = await _refund(terminal, bought["rrn"], 100)

    assert (reversal.body["response_code"], reversal.body["amount"]) == ("12", 0)
    assert refund_after["response_code"] == "00"
    assert await _balance(db, card["account_id"]) == 10_000 - 4_000 + 1_500 + 100


async def test_refund_at_b_closed_then_reversal_at_a_leaves_the_batches_whole(
    world: World, db
) -> None:
    """The model-based run's finding (issue 10): purchase at A, refund at B of the same
    merchant, B closes, A reverses, A closes. The reversal is declined, so the merchant's
    closed batches net exactly what the card paid."""
    merchant = await world.merchant()
    a = await world.terminal(merchant)
    b = await world.terminal(merchant)
    card = await world.card(balance=10_000)
    bought = await _buy(a, card, 1_000)
    await _refund(b, bought["rrn"], 300)
    b_figures = {"purchases": {"count": 0, "amount": 0}, "refunds": {"count": 1, "amount": 300}}
    b_close = await b.send("/v1/batches/close", {"batch_no": 1, **b_figures})

    _, reversal = await a.transact("reversal", original_stan=bought["stan"])
    a_figures = {"purchases": {"count": 1, "amount": 1_000}, "refunds": {"count": 0, "amount": 0}}
    a_close = await a.send("/v1/batches/close", {"batch_no": 1, **a_figures})

    assert b_close.body["in_balance"] is True
    assert (reversal.body["response_code"], reversal.body["amount"]) == ("12", 0)
    assert a_close.body["in_balance"] is True, a_close.body
    paid = 10_000 - await _balance(db, card["account_id"])
    batches = await db.fetch(
        "SELECT purchases_amount - refunds_amount AS net FROM batches WHERE terminal_id = ANY($1)",
        [a.config.terminal_id, b.config.terminal_id],
    )
    assert sum(r["net"] for r in batches) == paid == 700


async def test_refund_and_reversal_racing_return_the_amount_once(world: World, db) -> None:
    for _ in range(5):
        terminal = await world.terminal()
        card = await world.card(balance=10_000)
        bought = await _buy(terminal, card, 3_000)

        refund, (_, reversal) = await asyncio.gather(
            _refund(terminal, bought["rrn"], 3_000),
            terminal.transact("reversal", original_stan=bought["stan"]),
        )

        credited = (refund["amount"] if refund["response_code"] == "00" else 0) + reversal.body[
            "amount"
        ]
        assert credited == 3_000
        if refund["response_code"] == "00":
            # The refund came first: the purchase has a refund, so its reversal is 12
            # (never an acknowledgement that reversed nothing).
            assert reversal.body["response_code"] == "12", reversal.body
        assert await _balance(db, card["account_id"]) == 10_000


async def test_reversal_racing_its_original_never_debits(world: World, db) -> None:
    for _ in range(10):
        terminal = await world.terminal()
        card = await world.card(balance=10_000)
        original = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=700)

        purchase, (_, reversal) = await asyncio.gather(
            terminal.send("/v1/transactions", original),
            terminal.transact("reversal", original_stan=original["stan"]),
        )

        assert reversal.body["response_code"] == "00"
        assert purchase.body["response_code"] in ("00", "12")
        # Whichever came first, the money is back (or never left).
        assert await _balance(db, card["account_id"]) == 10_000


async def test_batch_close_reconciles_and_opens_the_next(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=100_000)
    a = await _buy(terminal, card, 1_000)
    await _buy(terminal, card, 2_000)
    reversed_one = await _buy(terminal, card, 4_000)
    await terminal.transact("reversal", original_stan=reversed_one["stan"])
    await _refund(terminal, a["rrn"], 300)
    figures = {"purchases": {"count": 2, "amount": 3_000}, "refunds": {"count": 1, "amount": 300}}

    close = await terminal.send("/v1/batches/close", {"batch_no": 1, **figures})
    again = await terminal.send("/v1/batches/close", {"batch_no": 1, **figures})
    await _buy(terminal, card, 500)
    next_close = await terminal.send(
        "/v1/batches/close",
        {"batch_no": 2, "purchases": {"count": 1, "amount": 400}, "refunds": figures["refunds"]},
    )

    assert close.status == 200 and close.body["in_balance"] is True
    assert close.body["gateway"] == figures and close.body["terminal"] == figures
    assert again.body == close.body
    assert next_close.body["in_balance"] is False
    assert next_close.body["gateway"]["purchases"] == {"count": 1, "amount": 500}


async def test_batch_close_of_a_batch_not_open_is_409(world: World) -> None:
    terminal = await world.terminal()
    zero = {"purchases": {"count": 0, "amount": 0}, "refunds": {"count": 0, "amount": 0}}

    answer = await terminal.send("/v1/batches/close", {"batch_no": 3, **zero})

    assert answer.status == 409 and answer.body["error"]["code"] == "batch_mismatch"


async def test_reversal_after_its_batch_closed_is_declined_and_the_close_stands(
    world: World, db
) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    bought = await _buy(terminal, card, 2_500)
    figures = {"purchases": {"count": 1, "amount": 2_500}, "refunds": {"count": 0, "amount": 0}}
    closed = await terminal.send("/v1/batches/close", {"batch_no": 1, **figures})

    _, reversal = await terminal.transact("reversal", original_stan=bought["stan"])
    again = await terminal.send("/v1/batches/close", {"batch_no": 1, **figures})

    assert closed.body["in_balance"] is True
    assert reversal.body["response_code"] == "12" and reversal.body["approved"] is False
    assert await _balance(db, card["account_id"]) == 7_500
    assert again.body == closed.body


async def test_reversal_of_a_refund_is_declined_and_the_refund_stands(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    bought = await _buy(terminal, card, 3_000)
    refund = await _refund(terminal, bought["rrn"], 3_000)

    _, reversal = await terminal.transact("reversal", original_stan=refund["stan"])

    assert reversal.body["response_code"] == "12"
    assert await _balance(db, card["account_id"]) == 10_000


async def test_reversal_just_after_midnight_finds_yesterdays_purchase(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    _, bought = await terminal.transact(
        "purchase", pan=card["pan"], pin="4321", amount=2_500,
        local_time="2026-11-24T23:59:58+08:00",
    )  # fmt: skip

    _, reversal = await terminal.transact(
        "reversal", original_stan=bought.body["stan"], local_time="2026-11-25T00:00:05+08:00"
    )

    assert bought.body["response_code"] == "00"
    assert (reversal.body["response_code"], reversal.body["amount"]) == ("00", 2_500)
    assert await _balance(db, card["account_id"]) == 10_000


async def test_reversal_after_midnight_blocks_yesterdays_late_original(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    original = terminal.transaction_body(
        "purchase", pan=card["pan"], pin="4321", amount=900,
        local_time="2026-11-24T23:59:58+08:00",
    )  # fmt: skip

    _, reversal = await terminal.transact(
        "reversal", original_stan=original["stan"], local_time="2026-11-25T00:00:03+08:00"
    )
    late = await terminal.send("/v1/transactions", original)

    assert reversal.body["response_code"] == "00"
    assert late.body["response_code"] == "12"
    assert await _balance(db, card["account_id"]) == 10_000


async def test_reversal_naming_the_originals_time_reverses_that_day(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    _, bought = await terminal.transact(
        "purchase", pan=card["pan"], pin="4321", amount=700,
        local_time="2026-11-20T10:00:00+08:00",
    )  # fmt: skip

    _, reversal = await terminal.transact(
        "reversal",
        original_stan=bought.body["stan"],
        original_local_time="2026-11-20T10:00:00+08:00",
        local_time="2026-11-21T09:00:00+08:00",
    )

    assert (reversal.body["response_code"], reversal.body["amount"]) == ("00", 700)
    assert await _balance(db, card["account_id"]) == 10_000
