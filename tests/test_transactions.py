"""The terminal protocol end to end: every response code, replay, 94, lockout."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from terminal_sim.protocol import encode_body

from .conftest import World

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def test_purchase_debits_and_journals(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)

    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=1250)

    assert answer.status == 200
    body = answer.body
    assert body["response_code"] == "00" and body["approved"] is True
    assert body["amount"] == 1250 and body["balance"] == 8_750
    assert len(body["rrn"]) == 12 and len(body["auth_code"]) == 6
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    journal = await db.fetch(
        "SELECT kind, amount, balance_after FROM journal WHERE account_id = $1 ORDER BY entry_id",
        card["account_id"],
    )
    assert balance == 8_750
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in journal] == [
        ("allocation", 10_000, 10_000),
        ("purchase", -1_250, 8_750),
    ]


async def test_balance_inquiry_answers_balance_and_moves_nothing(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=4_200)

    _, answer = await terminal.transact("balance_inquiry", pan=card["pan"], pin="4321")

    assert answer.body["response_code"] == "00"
    assert answer.body["balance"] == 4_200
    assert "amount" not in answer.body
    lines = await db.fetchval(
        "SELECT count(*) FROM journal WHERE account_id = $1", card["account_id"]
    )
    assert lines == 1


async def test_insufficient_funds_is_51_and_debits_nothing(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=1_000)

    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=1_001)

    assert answer.body["response_code"] == "51"
    assert "balance" not in answer.body
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 1_000


async def test_exact_balance_can_be_spent(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=1_000)

    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=1_000)

    assert answer.body["response_code"] == "00" and answer.body["balance"] == 0


async def test_undesignated_merchant_is_03(world: World) -> None:
    terminal = await world.terminal(designated=False)
    card = await world.card()

    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert answer.body["response_code"] == "03"


async def test_zero_and_over_limit_amounts_are_13(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=1_000_000)

    _, zero = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=0)
    _, huge = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=500_001)
    _, limit = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=500_000)

    assert zero.body["response_code"] == "13"
    assert huge.body["response_code"] == "13"
    assert limit.body["response_code"] == "00"


async def test_unknown_pan_is_14(world: World) -> None:
    terminal = await world.terminal()

    _, unknown = await terminal.transact(
        "purchase", pan="6217990000999999994", pin="1234", amount=100
    )
    _, bad_luhn = await terminal.transact(
        "purchase", pan="6217990000999999995", pin="1234", amount=100
    )

    assert unknown.body["response_code"] == "14"
    assert bad_luhn.body["response_code"] == "14"


async def test_lost_card_is_41(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card()
    await world.admin(f"/v1/admin/cards/{card['pan']}/report-lost", status=200)

    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert answer.body["response_code"] == "41"


async def test_expired_card_is_54(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(expires_on=date.today() - timedelta(days=2))

    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert answer.body["response_code"] == "54"


async def test_wrong_pin_is_55(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)

    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="9999", amount=100)

    assert answer.body["response_code"] == "55"
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 5_000


async def test_cash_withdrawal_and_transfer_are_57_and_recorded(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)

    _, cash = await terminal.transact("cash_withdrawal", pan=card["pan"], pin="4321", amount=100)
    _, transfer = await terminal.transact("transfer", pan=card["pan"], amount=100)

    assert cash.body["response_code"] == "57"
    assert transfer.body["response_code"] == "57"
    recorded = await db.fetch(
        "SELECT txn_type, response_code FROM transactions WHERE terminal_id = $1 ORDER BY stan",
        terminal.config.terminal_id,
    )
    assert [(r["txn_type"], r["response_code"]) for r in recorded] == [
        ("cash_withdrawal", "57"),
        ("transfer", "57"),
    ]


async def test_frozen_account_is_62(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card()
    await world.admin(f"/v1/admin/accounts/{card['account_id']}/freeze", status=200)

    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert answer.body["response_code"] == "62"


async def test_third_wrong_pin_locks_card_until_counter_reset(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    codes = []
    for _ in range(3):
        _, answer = await terminal.transact("purchase", pan=card["pan"], pin="0000", amount=100)
        codes.append(answer.body["response_code"])
    _, right_pin = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert codes == ["55", "55", "75"]
    assert right_pin.body["response_code"] == "75"

    await world.admin(
        f"/v1/admin/cards/{card['pan']}/pin-reset",
        {"ssn": card["ssn"], "new_pin": "8642"},
        status=200,
    )
    _, old_pin = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    _, new_pin = await terminal.transact("purchase", pan=card["pan"], pin="8642", amount=100)
    assert old_pin.body["response_code"] == "55"
    assert new_pin.body["response_code"] == "00"


async def test_correct_pin_clears_the_failure_count(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    for pin in ("0000", "0000", "4321", "0000", "0000"):
        _, answer = await terminal.transact("balance_inquiry", pan=card["pan"], pin=pin)

    assert answer.body["response_code"] == "55"  # 2 failures after the reset, not 4


async def test_pin_reset_needs_the_holders_id_number(world: World) -> None:
    card = await world.card()
    other = await world.card()

    resp = await world.client.post(
        f"/v1/admin/cards/{card['pan']}/pin-reset",
        json={"ssn": other["ssn"], "new_pin": "7395"},
        headers=world.headers,
    )

    assert resp.status == 404


async def test_pin_block_under_another_key_counts_as_wrong_pin(world: World) -> None:
    terminal = await world.terminal()
    stranger = await world.terminal()
    card = await world.card()
    body = stranger.transaction_body("purchase", pan=card["pan"], pin="4321", amount=100)

    answer = await terminal.send("/v1/transactions", body)

    assert answer.body["response_code"] == "55"


async def test_replay_returns_the_stored_answer_and_changes_nothing(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    body = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=700)

    first = await terminal.send("/v1/transactions", body)
    second = await terminal.send("/v1/transactions", body)
    # A terminal may re-encipher the PIN for the retransmission (format 4 is randomized).
    third = await terminal.send(
        "/v1/transactions",
        {
            **body,
            "pin_block": terminal.transaction_body("x", pan=card["pan"], pin="4321")["pin_block"],
        },
    )

    assert first.body["response_code"] == "00"
    assert second.body == first.body
    assert third.body == first.body
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 4_300


async def test_replay_of_a_decline_is_the_same_decline(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card()
    body = terminal.transaction_body("purchase", pan=card["pan"], pin="0000", amount=100)

    first = await terminal.send("/v1/transactions", body)
    second = await terminal.send("/v1/transactions", body)

    assert first.body["response_code"] == "55"
    assert second.body == first.body
    failures = await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"])
    assert failures == 1


async def test_same_stan_different_content_is_94(world: World, db) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    body = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=700)

    first = await terminal.send("/v1/transactions", body)
    changed = await terminal.send("/v1/transactions", {**body, "amount": 800})

    assert first.body["response_code"] == "00"
    assert changed.body["response_code"] == "94"
    assert "rrn" not in changed.body
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", card["account_id"]
    )
    assert balance == 4_300


async def test_same_stan_on_another_day_is_a_new_request(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    body = terminal.transaction_body("purchase", pan=card["pan"], pin="4321", amount=100)
    yesterday = {**body, "local_time": "2026-01-01T09:00:00+08:00"}

    first = await terminal.send("/v1/transactions", body)
    second = await terminal.send("/v1/transactions", yesterday)

    assert first.body["response_code"] == second.body["response_code"] == "00"
    assert second.body["balance"] == 4_800


async def test_same_stan_from_two_terminals_are_two_requests(world: World) -> None:
    merchant = await world.merchant()
    one, two = await world.terminal(merchant), await world.terminal(merchant)
    card = await world.card(balance=5_000)

    _, a = await one.transact("purchase", pan=card["pan"], pin="4321", amount=100, stan="000777")
    _, b = await two.transact("purchase", pan=card["pan"], pin="4321", amount=100, stan="000777")

    assert (a.body["response_code"], b.body["response_code"]) == ("00", "00")
    assert b.body["balance"] == 4_800


async def test_raw_body_bytes_are_what_is_signed(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card()
    body = terminal.transaction_body("balance_inquiry", pan=card["pan"], pin="4321")

    answer = await terminal.send("/v1/transactions", encode_body(body) + b"  \n")

    assert answer.status == 200 and answer.body["response_code"] == "00"


async def test_a_right_pin_restarts_the_count_even_when_declined(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=100)
    codes = []
    for pin, amount in (("0000", 50), ("0000", 50), ("4321", 5_000), ("0000", 50)):
        _, answer = await terminal.transact("purchase", pan=card["pan"], pin=pin, amount=amount)
        codes.append(answer.body["response_code"])

    assert codes == ["55", "55", "51", "55"]


async def test_approved_purchase_after_two_wrong_pins_clears_the_count(world: World, db) -> None:
    """Found by the model-based test: the single-statement path left the count at 2 after
    an approved purchase (its account lock skipped the row the debit had just updated)."""
    terminal = await world.terminal()
    card = await world.card(balance=5_000)
    for _ in range(2):
        _, wrong = await terminal.transact("purchase", pan=card["pan"], pin="0000", amount=100)
        assert wrong.body["response_code"] == "55"

    _, bought = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    _, wrong_again = await terminal.transact("purchase", pan=card["pan"], pin="0000", amount=100)

    assert bought.body["response_code"] == "00"
    assert wrong_again.body["response_code"] == "55"  # a first failure again, not a lock
    assert await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"]) == 1
