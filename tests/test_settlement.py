"""The settlement split end to end (DESIGN §10): itemised purchases and trials through the
terminal protocol, whole refunds and reversals, the fund's journal, the accumulators, the
reports, the daily limits, catalogue and policy loading; verify-ledger clean after each."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from .conftest import World
from .helpers import run_demo_data
from .insurance_helpers import business_today, contribute, this_month

pytestmark = pytest.mark.usefixtures("ledger_clean")

YEAR = business_today().year
# Tests share one database: every test that depends on a policy sets it first.
PHARMACY = {"merchant_kind": "pharmacy", "year": YEAR, "deductible": 5000,
            "fund_ratio_bp": 7000, "annual_cap": 100_000}  # fmt: skip
HOSPITAL = {"merchant_kind": "hospital", "year": YEAR, "deductible": 0,
            "fund_ratio_bp": 9000, "annual_cap": 400_000}  # fmt: skip


async def set_policies(world: World, **pharmacy: Any) -> None:
    await world.admin("/v1/admin/policies", {"policies": [{**PHARMACY, **pharmacy}, HOSPITAL]})


async def catalogue(world: World) -> dict[str, str]:
    """Fresh codes for this test: A (fully eligible), B (20 % self-pay), C (not eligible)."""
    tag = secrets.token_hex(4).upper()
    codes = {"A": f"A-{tag}", "B": f"B-{tag}", "C": f"C-{tag}"}
    await world.admin("/v1/admin/catalogue", {"items": [
        {"code": codes["A"], "name": "Amoxicillin 0.25g x24", "category": "A"},
        {"code": codes["B"], "name": "Compound Danshen", "category": "B", "self_pay_bp": 2000},
        {"code": codes["C"], "name": "Vitamin C effervescent", "category": "C"},
    ]})  # fmt: skip
    return codes


def items(*lines: tuple[str, int, int]) -> list[dict[str, Any]]:
    return [{"code": c, "quantity": q, "unit_price": p} for c, q, p in lines]


async def covered_card(world: World, balance: int = 100_000) -> dict[str, Any]:
    card = await world.card(balance=balance)
    await contribute(world, card["ssn"], this_month())
    return card


async def itemised(terminal, card, lines, txn_type="purchase", pin=True, **extra):
    amount = extra.pop("amount", sum(line["quantity"] * line["unit_price"] for line in lines))
    return await terminal.transact(
        txn_type, pan=card["pan"], pin=card["pin"] if pin else None, amount=amount,
        items=lines, **extra,
    )  # fmt: skip


async def accumulators(db: asyncpg.Connection, ssn: str) -> tuple[int, int]:
    row = await db.fetchrow(
        "SELECT deductible_used, fund_used FROM fund_accumulators WHERE ssn = $1 AND year = $2",
        ssn, YEAR,
    )  # fmt: skip
    return (row["deductible_used"], row["fund_used"]) if row else (0, 0)


async def fund_owed(db: asyncpg.Connection, merchant_id: str) -> int:
    return await db.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM fund_journal WHERE merchant_id = $1", merchant_id
    )


async def test_covered_purchase_splits_fund_account_and_replays(world: World, db) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await covered_card(world)
    lines = items((codes["A"], 2, 10_000), (codes["B"], 3, 3333), (codes["C"], 1, 700))
    body, answer = await itemised(terminal, card, lines)
    # A 20000; B 9999 - floor(9999 * 0.2) = 8000; C 0: eligible 28000. Deductible 5000,
    # fund floor(23000 * 0.7) = 16100; total 30699, personal 14599 from the account.
    assert answer.body["response_code"] == "00", answer.body
    assert answer.body["split"] == {
        "total": 30699, "eligible": 28000, "deductible_applied": 5000, "fund": 16100,
        "account": 14599, "cash": 0, "covered": True,
    }  # fmt: skip
    assert answer.body["amount"] == 30699
    assert answer.body["balance"] == 100_000 - 14599
    assert await accumulators(db, card["ssn"]) == (5000, 16100)
    assert await fund_owed(db, merchant) == 16100
    lines_stored = await db.fetch(
        "SELECT code, eligible FROM settlement_lines l JOIN transactions t USING (transaction_id)"
        " WHERE t.rrn = $1 ORDER BY line_no",
        answer.body["rrn"],
    )
    assert [(r["code"], r["eligible"]) for r in lines_stored] == [
        (codes["A"], 20000), (codes["B"], 8000), (codes["C"], 0),
    ]  # fmt: skip

    # The same request again: the same answer, nothing moves twice.
    replay = await terminal.send("/v1/transactions", body)
    assert replay.body == answer.body
    assert await accumulators(db, card["ssn"]) == (5000, 16100)
    # Same STAN with other items (or another account_max): 94.
    other = {**body, "items": items((codes["A"], 2, 10_000), (codes["B"], 3, 3333),
                                    (codes["C"], 1, 700))[::-1]}  # fmt: skip
    assert (await terminal.send("/v1/transactions", other)).body["response_code"] == "94"
    capped = {**body, "account_max": 100}
    assert (await terminal.send("/v1/transactions", capped)).body["response_code"] == "94"

    # The second purchase of the year: the deductible is used up, all eligible is funded.
    _, second = await itemised(terminal, card, items((codes["A"], 1, 1000)))
    assert (second.body["split"]["deductible_applied"], second.body["split"]["fund"]) == (0, 700)


async def test_contributions_stopped_fund_zero_account_still_pays(world: World, db) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    terminal = await world.terminal()
    card = await world.card(balance=50_000)
    # Last paid two months ago: the second month of the interruption is not covered.
    await contribute(world, card["ssn"], this_month(-2))
    _, answer = await itemised(terminal, card, items((codes["A"], 1, 20_000)))
    assert answer.body["response_code"] == "00"
    assert answer.body["split"] == {
        "total": 20000, "eligible": 20000, "deductible_applied": 0, "fund": 0,
        "account": 20000, "cash": 0, "covered": False,
    }  # fmt: skip
    assert answer.body["balance"] == 30_000
    assert await accumulators(db, card["ssn"]) == (0, 0)


async def test_first_month_of_interruption_still_covered(world: World) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    terminal = await world.terminal(kind="hospital")
    card = await world.card()
    await contribute(world, card["ssn"], this_month(-1))
    _, answer = await itemised(terminal, card, items((codes["B"], 1, 10_000)))
    # Hospital: no deductible, 90 % of B's eligible 8000.
    assert answer.body["split"]["covered"] is True
    assert answer.body["split"]["fund"] == 7200


async def test_a_suspension_takes_the_fund_away(world: World, db) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    terminal = await world.terminal()
    card = await world.card()
    await contribute(world, card["ssn"], this_month(-1))
    await contribute(world, card["ssn"], this_month())
    # A suspension from last month (as loaded from elsewhere): those contributions do not
    # count (DESIGN §5), so the fund pays nothing today.
    await db.execute(
        "INSERT INTO suspensions (ssn, from_month, declared_by) VALUES ($1, $2, 'operator')",
        card["ssn"], this_month(-1),
    )  # fmt: skip
    _, answer = await itemised(terminal, card, items((codes["A"], 1, 20_000)))
    assert answer.body["response_code"] == "00"
    assert (answer.body["split"]["covered"], answer.body["split"]["fund"]) == (False, 0)


async def test_balance_and_account_max_leave_cash_and_nothing_paid_is_51(world: World) -> None:
    await set_policies(world, deductible=0)
    codes = await catalogue(world)
    terminal = await world.terminal()
    card = await covered_card(world, balance=1000)
    _, low = await itemised(terminal, card, items((codes["A"], 1, 10_000)))
    assert (low.body["split"]["fund"], low.body["split"]["account"],
            low.body["split"]["cash"]) == (7000, 1000, 2000)  # fmt: skip
    assert low.body["balance"] == 0
    _, capped = await itemised(terminal, card, items((codes["A"], 1, 10_000)), account_max=0)
    assert capped.body["response_code"] == "00"
    assert (capped.body["split"]["account"], capped.body["split"]["cash"]) == (0, 3000)
    # Category C only, nothing in the account: neither fund nor account pays.
    _, nothing = await itemised(terminal, card, items((codes["C"], 1, 500)))
    assert nothing.body["response_code"] == "51"
    assert "split" not in nothing.body


async def test_itemised_declines_before_the_pin(world: World, db) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    terminal = await world.terminal()
    card = await covered_card(world)
    _, mismatch = await itemised(terminal, card, items((codes["A"], 2, 100)), amount=201)
    assert mismatch.body["response_code"] == "13"
    _, unknown = await itemised(terminal, card, items(("NO-SUCH-CODE", 1, 100)))
    assert unknown.body["response_code"] == "12"
    # Declines by the lines cost no PIN try: a wrong PIN is not even looked at.
    _, wrong_pin_unknown = await terminal.transact(
        "purchase", pan=card["pan"], pin="0000", amount=100, items=items(("NOPE", 1, 100))
    )
    assert wrong_pin_unknown.body["response_code"] == "12"
    assert await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"]) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"items": []},
        {"items": "A1"},
        {"items": [{"code": "A1", "quantity": 0, "unit_price": 1}]},
        {"items": [{"code": "A1", "quantity": 1.0, "unit_price": 1}]},
        {"items": [{"code": "A1", "quantity": 1, "unit_price": -1}]},
        {"items": [{"code": "A1", "quantity": 1, "unit_price": "1"}]},
        {"items": [{"code": "A1", "quantity": True, "unit_price": 1}]},
        {"items": [{"code": "A1", "quantity": 1, "unit_price": 1, "x": 1}]},
        {"items": [{"code": "", "quantity": 1, "unit_price": 1}]},
        {"items": [{"code": "A1", "quantity": 1, "unit_price": 1}] * 101},
        {"items": [{"code": "A1", "quantity": 1, "unit_price": 1}], "account_max": -1},
        {"items": [{"code": "A1", "quantity": 1, "unit_price": 1}], "account_max": 1.5},
    ],
)
async def test_malformed_items_are_400(world: World, db, bad: dict[str, Any]) -> None:
    terminal = await world.terminal()
    card = await world.card()
    before = await db.fetchval("SELECT count(*) FROM transactions")
    _, answer = await terminal.transact(
        "purchase", pan=card["pan"], pin=card["pin"], amount=1, **bad
    )
    assert answer.status == 400, answer.body
    assert await db.fetchval("SELECT count(*) FROM transactions") == before


async def test_trial_answers_the_split_and_moves_nothing(world: World, db) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    terminal = await world.terminal()
    card = await covered_card(world)
    lines = items((codes["A"], 1, 20_000))
    body, trial = await itemised(terminal, card, lines, "settlement_trial", pin=False)
    assert trial.body["response_code"] == "00", trial.body
    assert trial.body["split"]["fund"] == 10_500  # (20000 - 5000) * 0.7
    assert trial.body["balance"] == 100_000
    assert await accumulators(db, card["ssn"]) == (0, 0)
    assert (await terminal.send("/v1/transactions", body)).body == trial.body
    # The purchase that follows gets the split the trial showed.
    _, purchase = await itemised(terminal, card, lines)
    assert purchase.body["split"] == trial.body["split"]
    # A PIN sent with a trial counts like any PIN.
    _, wrong = await terminal.transact(
        "settlement_trial", pan=card["pan"], pin="0000", amount=20_000, items=lines
    )
    assert wrong.body["response_code"] == "55"
    assert await db.fetchval("SELECT pin_failures FROM cards WHERE pan = $1", card["pan"]) == 1


async def test_refund_whole_gives_everything_back_partial_is_13(world: World, db) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await covered_card(world)
    _, bought = await itemised(terminal, card, items((codes["A"], 1, 20_000)), account_max=2000)
    split = bought.body["split"]
    assert (split["fund"], split["account"], split["cash"]) == (10_500, 2000, 7500)
    rrn = bought.body["rrn"]
    _, partial = await terminal.transact("refund", original_rrn=rrn, amount=2000)
    assert partial.body["response_code"] == "13"
    _, whole = await terminal.transact("refund", original_rrn=rrn, amount=20_000)
    assert whole.body["response_code"] == "00", whole.body
    assert whole.body["balance"] == 100_000
    assert await accumulators(db, card["ssn"]) == (0, 0)
    assert await fund_owed(db, merchant) == 0
    _, again = await terminal.transact("refund", original_rrn=rrn, amount=20_000)
    assert again.body["response_code"] == "13"
    # The day's settlement: account net 0, fund net 0, the cash owed back.
    report = await world.client.get(
        "/v1/admin/settlement", params={"date": business_today().isoformat(),
                                        "merchant_id": merchant}, headers=world.headers,
    )  # fmt: skip
    row = (await report.json())["merchants"][0]
    assert (row["account_amount"], row["fund_amount"], row["cash_amount"]) == (0, 0, 0)


async def test_reversal_undoes_an_itemised_purchase_whole(world: World, db) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await covered_card(world)
    body, bought = await itemised(terminal, card, items((codes["A"], 1, 20_000)))
    assert await accumulators(db, card["ssn"]) == (5000, 10_500)
    _, reversal = await terminal.transact("reversal", original_stan=body["stan"])
    assert reversal.body["response_code"] == "00"
    assert reversal.body["balance"] == 100_000
    assert await accumulators(db, card["ssn"]) == (0, 0)
    assert await fund_owed(db, merchant) == 0
    kinds = await db.fetch(
        "SELECT kind, amount FROM fund_journal WHERE merchant_id = $1 ORDER BY entry_id", merchant
    )
    assert [(r["kind"], r["amount"]) for r in kinds] == [("purchase", 10_500),
                                                        ("reversal", -10_500)]  # fmt: skip
    # Twice: acknowledged, nothing more given back.
    _, twice = await terminal.transact("reversal", original_stan=body["stan"])
    assert twice.body["response_code"] == "00"
    assert await fund_owed(db, merchant) == 0
    _, refund = await terminal.transact("refund", original_rrn=bought.body["rrn"], amount=20_000)
    assert refund.body["response_code"] == "12"


async def test_batch_counts_the_account_part_and_reports_fund_and_cash(world: World) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await covered_card(world)
    await itemised(terminal, card, items((codes["A"], 1, 20_000)), account_max=3000)
    await terminal.transact("purchase", pan=card["pan"], pin=card["pin"], amount=500)
    _, close = await terminal.close_batch(
        1, {"count": 2, "amount": 3500}, {"count": 0, "amount": 0}
    )
    assert close.body["in_balance"] is True, close.body
    day = business_today().isoformat()
    report = await world.client.get("/v1/admin/settlement", headers=world.headers,
                                    params={"date": day, "merchant_id": merchant})  # fmt: skip
    row = (await report.json())["merchants"][0]
    assert (row["account_amount"], row["fund_amount"], row["cash_amount"]) == (3500, 10_500, 6500)
    liability = await world.client.get("/v1/admin/reports/fund-liability", headers=world.headers,
                                       params={"from": day, "merchant_id": merchant})  # fmt: skip
    rows = (await liability.json())["merchants"]
    assert [(r["local_date"], r["owed"], r["net_amount"]) for r in rows] == [(day, 10_500, 10_500)]


async def test_daily_limits_61_and_65_and_a_reversal_gives_back(world: World) -> None:
    codes = await catalogue(world)
    terminal = await world.terminal()
    card = await covered_card(world)
    try:
        await set_policies(world, daily_amount_limit=30_000, daily_count_limit=2)
        body, first = await itemised(terminal, card, items((codes["C"], 1, 20_000)))
        assert first.body["response_code"] == "00"
        _, over = await itemised(terminal, card, items((codes["C"], 1, 10_001)))
        assert over.body["response_code"] == "61"
        _, second = await itemised(terminal, card, items((codes["C"], 1, 10_000)))
        assert second.body["response_code"] == "00"
        _, third = await itemised(terminal, card, items((codes["C"], 1, 1)))
        assert third.body["response_code"] == "65"
        await terminal.transact("reversal", original_stan=body["stan"])
        _, after = await itemised(terminal, card, items((codes["C"], 1, 20_000)))
        assert after.body["response_code"] == "00"
    finally:
        await set_policies(world)


async def test_daily_limits_hold_for_plain_purchases_too(world: World, db) -> None:
    codes = await catalogue(world)
    terminal = await world.terminal()
    hospital = await world.terminal(kind="hospital")
    card = await world.card(balance=100_000)
    try:
        await set_policies(world, daily_amount_limit=5000, daily_count_limit=3)
        body, first = await terminal.transact("purchase", pan=card["pan"], pin=card["pin"],
                                              amount=3000)  # fmt: skip
        assert first.body["response_code"] == "00"
        # A hospital purchase (no limits in its policy) still counts for the card's day.
        _, elsewhere = await hospital.transact("purchase", pan=card["pan"], pin=card["pin"],
                                               amount=1000)  # fmt: skip
        assert elsewhere.body["response_code"] == "00"
        _, over = await terminal.transact("purchase", pan=card["pan"], pin=card["pin"],
                                          amount=1001)  # fmt: skip
        assert over.body["response_code"] == "61"
        _, fits = await itemised(terminal, card, items((codes["C"], 1, 1000)))
        assert fits.body["response_code"] == "00"
        _, fourth = await terminal.transact("purchase", pan=card["pan"], pin=card["pin"],
                                            amount=1)  # fmt: skip
        assert fourth.body["response_code"] == "65"
        await terminal.transact("reversal", original_stan=body["stan"])
        _, after = await terminal.transact("purchase", pan=card["pan"], pin=card["pin"],
                                           amount=3000)  # fmt: skip
        assert after.body["response_code"] == "00", after.body
        balance = await db.fetchval("SELECT balance FROM individual_accounts WHERE ssn = $1",
                                    card["ssn"])  # fmt: skip
        assert balance == 100_000 - 1000 - 1000 - 3000
    finally:
        await set_policies(world)


async def test_many_terminals_one_person_the_annual_cap_holds(world: World, db) -> None:
    await set_policies(world, deductible=0, annual_cap=50_000, fund_ratio_bp=10_000)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminals = [await world.terminal(merchant) for _ in range(6)]
    card = await covered_card(world, balance=1_000_000)

    async def buy(terminal) -> dict[str, Any]:
        results = []
        for _ in range(3):
            _, answer = await itemised(terminal, card, items((codes["A"], 1, 7000)))
            results.append(answer.body)
        return results

    answers = [a for batch in await asyncio.gather(*(buy(t) for t in terminals)) for a in batch]
    assert all(a["response_code"] == "00" for a in answers)
    funds = [a["split"]["fund"] for a in answers]
    assert sum(funds) == 50_000  # 18 x 7000 = 126000 asked; the cap is 50000, exactly
    assert await accumulators(db, card["ssn"]) == (0, 50_000)
    balance = await db.fetchval(
        "SELECT balance FROM individual_accounts WHERE ssn = $1", card["ssn"]
    )
    assert balance == 1_000_000 - (18 * 7000 - 50_000)


async def test_catalogue_and_policy_loading_all_or_nothing(world: World, db) -> None:
    tag = secrets.token_hex(4).upper()
    csv_text = (
        "code,name,category,self_pay_bp\n"
        f"G-{tag},Good,A,0\n"
        f"H-{tag},Bad share,A,500\n"
        f"I-{tag},Bad category,D,0\n"
        f"J-{tag},Fine B,B,1500\n"
    )
    resp = await world.client.post(
        "/v1/admin/catalogue", data=csv_text.encode(),
        headers={**world.headers, "Content-Type": "text/csv"},
    )  # fmt: skip
    error = (await resp.json())["error"]
    assert resp.status == 400
    assert "line 3" in error["message"] and "line 4" in error["message"]
    assert "line 2" not in error["message"] and "line 5" not in error["message"]
    assert await db.fetchval("SELECT count(*) FROM catalogue_items WHERE code LIKE $1",
                             f"%-{tag}") == 0  # fmt: skip
    good = "\n".join(csv_text.splitlines()[:2] + csv_text.splitlines()[4:]) + "\n"
    resp = await world.client.post(
        "/v1/admin/catalogue", data=good.encode(),
        headers={**world.headers, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert resp.status == 201 and (await resp.json())["loaded"] == 2
    bad_policy = {"policies": [PHARMACY, {**HOSPITAL, "fund_ratio_bp": 10_001}]}
    refused = await world.admin("/v1/admin/policies", bad_policy, status=400)
    assert "line 2" in refused["error"]["message"]


async def test_loads_through_the_api_are_audited_with_counts_and_outcome(world: World, db) -> None:
    tag = secrets.token_hex(4).upper()
    headers = {**world.headers, "X-Operator-Id": f"loader-{tag}"}
    bad = f"code,name,category,self_pay_bp\nL-{tag},Good,A,0\nM-{tag},Bad,D,0\n"
    good = f"code,name,category,self_pay_bp\nL-{tag},Good,A,0\n"
    for body, status in ((bad, 400), (good, 201)):
        resp = await world.client.post(
            "/v1/admin/catalogue", data=body.encode(),
            headers={**headers, "Content-Type": "text/csv"},
        )  # fmt: skip
        assert resp.status == status
    resp = await world.client.post(
        "/v1/admin/policies", json={"policies": [{**PHARMACY, "fund_ratio_bp": 10_001}]},
        headers=headers,
    )  # fmt: skip
    assert resp.status == 400

    audited = await db.fetch(
        "SELECT actor_kind, action, subject_kind, subject_id, details::text FROM audit_log "
        "WHERE actor_id = $1 ORDER BY audit_id",
        f"loader-{tag}",
    )
    assert [tuple(r) for r in audited] == [
        ("operator", "catalogue.load_refused", "catalogue", "catalogue_items",
         '{"rows": 2, "refused_rows": 1}'),
        ("operator", "catalogue.loaded", "catalogue", "catalogue_items", '{"rows": 1}'),
        ("operator", "policy.load_refused", "policy", "settlement_policies",
         '{"rows": 1, "refused_rows": 1}'),
    ]  # fmt: skip
    trail = await world.client.get(
        "/v1/admin/audit", params={"subject_kind": "catalogue"}, headers=world.headers
    )
    assert trail.status == 200


async def test_demo_world_has_catalogue_policies_and_coverage(
    demo: dict[str, Any], db, tmp_path: Path
) -> None:
    categories = {item["category"] for item in demo["catalogue"]}
    assert categories == {"A", "B", "C"} and len(demo["catalogue"]) >= 24
    assert all(item["self_pay_bp"] > 0 for item in demo["catalogue"] if item["category"] == "B")
    policy = demo["policy"]
    assert set(policy) == {"pharmacy", "hospital"} and policy["pharmacy"] != policy["hospital"]
    assert policy["pharmacy"]["deductible"] > 0
    covered = {card["alias"]: card["covered"] for card in demo["cards"]}
    assert covered["card-10"] is False
    assert covered["card-01"] is True and covered["card-05"] is True
    # demo-data writes no itemised purchase of its own (a rerun adds no split).
    before = await db.fetchval("SELECT count(*) FROM settlement_splits")
    again = await run_demo_data(tmp_path / "again.json")
    assert await db.fetchval("SELECT count(*) FROM settlement_splits") == before
    assert again["policy"] == demo["policy"] and again["catalogue"] == demo["catalogue"]


async def test_verify_ledger_finds_a_wrong_fund_line_and_accumulator(world: World, db) -> None:
    from pos_gateway.store.reports import ledger_problems

    await set_policies(world)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    card = await covered_card(world)
    _, bought = await itemised(terminal, card, items((codes["A"], 1, 20_000)))
    purchase = await db.fetchrow(
        "SELECT transaction_id, account_id FROM transactions WHERE rrn = $1", bought.body["rrn"]
    )
    # In a transaction rolled back: the shared ledger stays clean for the other tests.
    transaction = db.transaction()
    await transaction.start()
    try:
        assert await ledger_problems(db) == {}
        await db.execute(
            """
            INSERT INTO fund_journal (account_id, ssn, merchant_id, local_date, kind, amount,
                                      purchase_id, transaction_id)
            VALUES ($1, $2, $3, current_date, 'purchase', 1, $4, $4)
            """,
            purchase["account_id"], card["ssn"], merchant, purchase["transaction_id"],
        )  # fmt: skip
        await db.execute(
            "UPDATE fund_accumulators SET fund_used = fund_used + 7 WHERE ssn = $1", card["ssn"]
        )
        problems = await ledger_problems(db)
        assert set(problems) == {
            "fund_journal_differs_from_fund_shares", "accumulators_differ_from_splits",
        }  # fmt: skip
    finally:
        await transaction.rollback()


async def test_a_large_catalogue_loads_in_one_request(world: World, db) -> None:
    tag = secrets.token_hex(4).upper()
    rows = "".join(f"L{n}-{tag},Medicine number {n} in a long catalogue,A,0\n" for n in range(2000))
    resp = await world.client.post(
        "/v1/admin/catalogue", data=("code,name,category,self_pay_bp\n" + rows).encode(),
        headers={**world.headers, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["loaded"] == 2000
    assert await db.fetchval("SELECT count(*) FROM catalogue_items WHERE code LIKE $1",
                             f"%-{tag}") == 2000  # fmt: skip


async def test_refund_and_reversal_racing_give_back_once(world: World, db) -> None:
    await set_policies(world)
    codes = await catalogue(world)
    merchant = await world.merchant()
    terminal = await world.terminal(merchant)
    for _ in range(3):
        card = await covered_card(world)
        body, bought = await itemised(terminal, card, items((codes["A"], 1, 20_000)))
        assert bought.body["response_code"] == "00"
        await asyncio.gather(
            terminal.transact("refund", original_rrn=bought.body["rrn"], amount=20_000),
            terminal.transact("reversal", original_stan=body["stan"]),
        )
        balance = await db.fetchval(
            "SELECT balance FROM individual_accounts WHERE ssn = $1", card["ssn"]
        )
        assert balance == 100_000
        assert await accumulators(db, card["ssn"]) == (0, 0)
    assert await fund_owed(db, merchant) == 0
