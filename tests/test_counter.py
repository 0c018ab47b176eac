"""Counter services through the operator API, checked through the terminal protocol:
replacement card, freeze, merchant designation, terminal re-key, PIN reset."""

from __future__ import annotations

from datetime import timedelta

import pytest

from terminal_sim.client import Terminal, TerminalConfig
from terminal_sim.protocol import StanCounter

from .conftest import World
from .helpers import new_ssn
from .insurance_helpers import business_today, get

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def test_replacement_card_keeps_account_and_balance_and_old_card_is_41(
    world: World, db
) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=10_000)
    _, spent = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=2_500)
    await world.admin(f"/v1/admin/cards/{card['pan']}/report-lost", status=200)

    wrong_holder = await world.admin(
        f"/v1/admin/cards/{card['pan']}/replace", {"ssn": new_ssn()}, status=404
    )
    new = await world.admin(
        f"/v1/admin/cards/{card['pan']}/replace", {"ssn": card["ssn"], "pin": "7391"}
    )
    again = await world.admin(
        f"/v1/admin/cards/{card['pan']}/replace", {"ssn": card["ssn"]}, status=409
    )

    _, old_answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    _, balance = await terminal.transact("balance_inquiry", pan=new["pan"], pin="7391")
    _, bought = await terminal.transact("purchase", pan=new["pan"], pin="7391", amount=1_000)

    assert spent.body["balance"] == 7_500
    assert wrong_holder["error"]["code"] == "not_found"
    assert again["error"]["code"] == "card_replaced"
    assert new["pan"] != card["pan"] and new["account_id"] == card["account_id"]
    assert "pin" not in new  # chosen at the counter, so not echoed
    assert old_answer.body["response_code"] == "41"
    assert (balance.body["response_code"], balance.body["balance"]) == ("00", 7_500)
    assert (bought.body["response_code"], bought.body["balance"]) == ("00", 6_500)
    old_status = await get(world, f"/v1/admin/cards/{card['pan']}")
    assert old_status["status"] == "replaced"
    replaces = await db.fetchval(
        "SELECT o.pan FROM cards n JOIN cards o ON o.card_id = n.replaces_card_id WHERE n.pan = $1",
        new["pan"],
    )
    assert replaces == card["pan"]


async def test_replacing_an_active_card_generates_a_pin_once(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=3_000)

    new = await world.admin(f"/v1/admin/cards/{card['pan']}/replace", {"ssn": card["ssn"]})
    _, answer = await terminal.transact("purchase", pan=new["pan"], pin=new["pin"], amount=300)
    lost_after = await world.admin(f"/v1/admin/cards/{card['pan']}/report-lost", status=409)

    assert len(new["pin"]) == 6
    assert answer.body["response_code"] == "00" and answer.body["balance"] == 2_700
    assert lost_after["error"]["code"] == "card_replaced"


async def test_freeze_is_62_and_unfreeze_restores_the_card(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card()
    path = f"/v1/admin/accounts/{card['account_id']}"

    await world.admin(f"{path}/freeze", status=200)
    _, frozen = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    await world.admin(f"{path}/unfreeze", status=200)
    _, thawed = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    missing = await world.admin("/v1/admin/accounts/999999999999/freeze", status=404)

    assert frozen.body["response_code"] == "62"
    assert thawed.body["response_code"] == "00"
    assert missing["error"]["code"] == "not_found"


async def test_merchant_suspension_is_03_until_reinstated(world: World) -> None:
    merchant_id = await world.merchant()
    terminal = await world.terminal(merchant_id)
    card = await world.card()

    suspended = await world.admin(f"/v1/admin/merchants/{merchant_id}/suspend", status=200)
    _, refused = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    reinstated = await world.admin(f"/v1/admin/merchants/{merchant_id}/reinstate", status=200)
    _, accepted = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert suspended["suspended"] is True and reinstated["suspended"] is False
    assert refused.body["response_code"] == "03"
    assert accepted.body["response_code"] == "00"


async def test_expired_designation_renewed_takes_cards_again(world: World) -> None:
    merchant_id = await world.merchant(designated=False)
    terminal = await world.terminal(merchant_id)
    card = await world.card()
    until = business_today() + timedelta(days=365)

    _, expired = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    backwards = await world.admin(
        f"/v1/admin/merchants/{merchant_id}/designation",
        {"designated_until": "2000-01-01"},
        status=400,
    )
    renewed = await world.admin(
        f"/v1/admin/merchants/{merchant_id}/designation",
        {"designated_until": until.isoformat()},
        status=200,
    )
    _, accepted = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert expired.body["response_code"] == "03"
    assert backwards["error"]["code"] == "invalid_period"
    assert renewed["designated_until"] == until.isoformat()
    assert accepted.body["response_code"] == "00"
    fetched = await get(world, f"/v1/admin/merchants/{merchant_id}")
    assert fetched == renewed


async def test_rekey_returns_new_keys_and_the_old_ones_stop_at_once(world: World) -> None:
    old = await world.terminal()
    card = await world.card()
    _, before = await old.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    terminal_id = old.config.terminal_id

    keys = await world.admin(f"/v1/admin/terminals/{terminal_id}/rekey", status=200)
    new = Terminal(
        world.client.session,
        world.base_url,
        TerminalConfig(terminal_id, bytes.fromhex(keys["mac_key"]), bytes.fromhex(keys["pin_key"])),
        StanCounter(500),
    )
    _, with_old = await old.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    _, with_new = await new.transact("purchase", pan=card["pan"], pin="4321", amount=100)

    assert before.body["response_code"] == "00"
    assert keys["mac_key"] != old.config.mac_key.hex()
    assert keys["pin_key"] != old.config.pin_key.hex()
    assert with_old.status == 401
    assert with_new.status == 200 and with_new.body["response_code"] == "00"


async def test_disabled_terminal_is_403_and_enabled_again_works(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card()
    path = f"/v1/admin/terminals/{terminal.config.terminal_id}"

    await world.admin(f"{path}/disable", status=200)
    _, disabled = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    await world.admin(f"{path}/enable", status=200)
    _, enabled = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=100)
    bad_id = await world.admin("/v1/admin/terminals/lower123/rekey", status=400)

    assert disabled.status == 403
    assert enabled.body["response_code"] == "00"
    assert bad_id["error"]["code"] == "malformed_request"


async def test_pin_reset_checks_the_id_number_and_clears_the_lockout(world: World) -> None:
    terminal = await world.terminal()
    card = await world.card()
    other = await world.card()
    for _ in range(3):
        await terminal.transact("purchase", pan=card["pan"], pin="0000", amount=100)

    wrong_person = await world.admin(
        f"/v1/admin/cards/{card['pan']}/pin-reset",
        {"ssn": other["ssn"], "new_pin": "8642"},
        status=404,
    )
    await world.admin(
        f"/v1/admin/cards/{card['pan']}/pin-reset",
        {"ssn": card["ssn"], "new_pin": "8642"},
        status=200,
    )
    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="8642", amount=100)

    assert wrong_person["error"]["code"] == "not_found"
    assert answer.body["response_code"] == "00"
