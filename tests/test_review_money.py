"""Money-path review findings (r1): each test pins a defect found after the merges."""

from __future__ import annotations

import pytest

from .conftest import World
from .test_settlement import (
    accumulators,
    catalogue,
    covered_card,
    fund_owed,
    itemised,
    items,
    set_policies,
)

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def test_reversal_of_a_refunded_itemised_purchase_with_no_account_part_is_12(
    world: World, db
) -> None:
    """A refund of an itemised purchase the account paid nothing of leaves refunded_amount
    at 0; the reversal must still see the refund and decline (12), not acknowledge."""
    await set_policies(world, deductible=0)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await covered_card(world)
    body, bought = await itemised(terminal, card, items((codes["A"], 1, 10_000)), account_max=0)
    assert bought.body["response_code"] == "00", bought.body
    assert (bought.body["split"]["account"], bought.body["split"]["cash"]) == (0, 3000)
    _, refund = await terminal.transact("refund", original_rrn=bought.body["rrn"], amount=10_000)
    assert refund.body["response_code"] == "00", refund.body
    _, reversal = await terminal.transact("reversal", original_stan=body["stan"])
    assert reversal.body["response_code"] == "12", reversal.body
    assert not await db.fetchval(
        "SELECT reversed FROM transactions WHERE rrn = $1", bought.body["rrn"]
    )
    assert await accumulators(db, card["ssn"]) == (0, 0)
    assert await fund_owed(db, merchant) == 0
