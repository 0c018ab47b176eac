"""The settlement split (DESIGN §10) as a pure function: hand-computed cases for each
branch of the formulas, and properties over random inputs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pos_gateway.domain.decisions import Code, DailyUse, decide_after_pin
from pos_gateway.domain.split import (
    Accumulators,
    CatalogueItem,
    Line,
    Policy,
    accumulate,
    decide_settlement,
    items_decline,
    line_eligible,
    split_purchase,
)

A = CatalogueItem("A1", "A")
B = CatalogueItem("B1", "B", 2000)  # 20 % self-pay
C = CatalogueItem("C1", "C")
POLICY = Policy(deductible=5000, fund_ratio_bp=7000, annual_cap=100_000)


def test_line_eligible_per_category() -> None:
    assert line_eligible(Line(A, 2, 1250)) == 2500
    # B: 3 x 333 = 999; self-pay floor(999 * 2000 / 10000) = 199; eligible 800.
    assert line_eligible(Line(B, 3, 333)) == 800
    assert line_eligible(Line(C, 5, 1000)) == 0


def test_deductible_not_yet_met_takes_eligible_first() -> None:
    # eligible 2500 + 800 = 3300 < deductible 5000 left: all of it is deductible, fund 0.
    split = split_purchase(
        [Line(A, 2, 1250), Line(B, 3, 333), Line(C, 1, 700)],
        covered=True, policy=POLICY, used=Accumulators(), balance=100_000,
    )  # fmt: skip
    assert split.total == 2500 + 999 + 700
    assert (split.eligible, split.deductible_applied, split.fund) == (3300, 3300, 0)
    assert (split.account, split.cash) == (4199, 0)


def test_deductible_partly_used_then_fund_pays_its_ratio() -> None:
    # 4000 of 5000 used: 1000 deductible; fund floor((20000 - 1000) * 0.7) = 13300.
    split = split_purchase(
        [Line(A, 1, 20000)], covered=True, policy=POLICY,
        used=Accumulators(deductible_used=4000), balance=100_000,
    )  # fmt: skip
    parts = (split.deductible_applied, split.fund, split.account, split.cash)
    assert parts == (1000, 13300, 6700, 0)


def test_deductible_met_and_fund_ratio_floors() -> None:
    split = split_purchase(
        [Line(A, 1, 1001)], covered=True, policy=POLICY,
        used=Accumulators(deductible_used=9999), balance=100_000,
    )  # fmt: skip
    assert (split.deductible_applied, split.fund) == (0, 700)  # floor(1001 * 0.7) = 700


def test_annual_cap_limits_the_fund() -> None:
    split = split_purchase(
        [Line(A, 1, 50000)], covered=True, policy=POLICY,
        used=Accumulators(deductible_used=5000, fund_used=99_000), balance=100_000,
    )  # fmt: skip
    assert (split.fund, split.account) == (1000, 49000)


def test_cap_already_exceeded_pays_nothing() -> None:
    split = split_purchase(
        [Line(A, 1, 50000)], covered=True, policy=POLICY,
        used=Accumulators(deductible_used=5000, fund_used=120_000), balance=100_000,
    )  # fmt: skip
    assert split.fund == 0


def test_not_covered_no_deductible_no_fund_but_the_account_pays() -> None:
    split = split_purchase(
        [Line(A, 1, 20000)], covered=False, policy=POLICY, used=Accumulators(), balance=100_000
    )
    assert (split.deductible_applied, split.fund, split.account, split.covered) == (
        0, 0, 20000, False,
    )  # fmt: skip


def test_no_policy_means_no_fund() -> None:
    split = split_purchase([Line(A, 1, 20000)], covered=True, policy=None,
                           used=Accumulators(), balance=100_000)  # fmt: skip
    assert (split.fund, split.account, split.covered) == (0, 20000, True)


def test_balance_and_account_max_send_the_rest_to_cash() -> None:
    lines = [Line(A, 1, 20000)]
    used = Accumulators(deductible_used=5000)
    low = split_purchase(lines, covered=True, policy=POLICY, used=used, balance=2500)
    assert (low.fund, low.account, low.cash) == (14000, 2500, 3500)
    capped = split_purchase(lines, covered=True, policy=POLICY, used=used, balance=100_000,
                            account_max=1000)  # fmt: skip
    assert (capped.account, capped.cash) == (1000, 5000)
    zero = split_purchase(lines, covered=True, policy=POLICY, used=used, balance=100_000,
                          account_max=0)  # fmt: skip
    assert (zero.account, zero.cash, zero.pays_something) == (0, 6000, True)


def test_accumulate_adds_the_split() -> None:
    split = split_purchase([Line(A, 1, 20000)], covered=True, policy=POLICY,
                           used=Accumulators(4000, 10), balance=0)  # fmt: skip
    assert accumulate(Accumulators(4000, 10), split) == Accumulators(5000, 10 + 13300)


def test_items_decline_amount_mismatch_13_unknown_code_12() -> None:
    items = [("A1", 2, 100), ("B1", 1, 50)]
    assert items_decline(250, items, {"A1", "B1"}, 10_000) is None
    assert items_decline(251, items, {"A1", "B1"}, 10_000) == Code.INVALID_AMOUNT
    assert items_decline(250, items, {"A1"}, 10_000) == Code.INVALID_TRANSACTION
    assert items_decline(0, [("A1", 1, 0)], {"A1"}, 10_000) == Code.INVALID_AMOUNT
    assert items_decline(250, items, {"A1", "B1"}, 200) == Code.INVALID_AMOUNT


def _settle(txn_type: str = "purchase", **kw):
    args = dict(
        txn_type=txn_type, lines=[Line(A, 1, 20000)], amount=20000, covered=True, policy=POLICY,
        used=Accumulators(5000, 0), card_status="active", pin_failures=1, pin_try=1,
        account_status="active", balance=10_000, account_max=None, daily=DailyUse(),
    )  # fmt: skip
    args.update(kw)
    return decide_settlement(**args)


def test_decide_settlement_approves_and_debits_only_the_account_part() -> None:
    outcome = _settle()
    assert outcome.code == Code.APPROVED and outcome.split is not None
    assert (outcome.split.fund, outcome.split.account, outcome.balance) == (14000, 6000, 4000)
    trial = _settle("settlement_trial")
    assert trial.code == Code.APPROVED and trial.balance == 10_000


def test_decide_settlement_51_when_neither_fund_nor_account_pays() -> None:
    outcome = _settle(covered=False, balance=0)
    assert (outcome.code, outcome.split) == (Code.INSUFFICIENT_FUNDS, None)
    assert _settle(lines=[Line(C, 1, 500)], account_max=0).code == Code.INSUFFICIENT_FUNDS


def test_decide_settlement_card_standing_and_daily_limits() -> None:
    assert _settle(card_status="lost").code == Code.LOST_CARD
    assert _settle(account_status="frozen").code == Code.RESTRICTED_CARD
    assert _settle(daily=DailyUse(count=2, count_limit=2)).code == Code.EXCEEDS_COUNT_LIMIT
    # The day's amount counts the purchase total, not only the account part.
    over = DailyUse(amount=10_001, amount_limit=30_000)
    assert _settle(daily=over).code == Code.EXCEEDS_AMOUNT_LIMIT
    assert _settle(daily=DailyUse(amount=10_000, amount_limit=30_000)).code == Code.APPROVED
    # A trial answers the split; the limits are the purchase's.
    assert _settle("settlement_trial", daily=over).code == Code.APPROVED
    # Whatever the answer, the request's own counted PIN try is forgiven (w9's rule);
    # a trial sent without a PIN (pin_try 0) forgives nothing.
    assert _settle(daily=over).pin_failures == 0 and _settle().pin_failures == 0
    assert _settle("settlement_trial", pin_failures=2, pin_try=0).pin_failures == 2


def test_decide_settlement_of_a_plain_purchase_under_limits() -> None:
    assert _settle(lines=None, amount=9000).code == Code.APPROVED
    assert _settle(lines=None, amount=9000).balance == 1000
    assert _settle(lines=None, amount=10_001).code == Code.INSUFFICIENT_FUNDS
    limited = DailyUse(amount=2000, amount_limit=10_000)
    assert _settle(lines=None, amount=9000, daily=limited).code == Code.EXCEEDS_AMOUNT_LIMIT


def test_decide_after_pin_limits_for_plain_purchases() -> None:
    common = dict(txn_type="purchase", card_status="active", pin_failures=1, pin_try=1,
                  account_status="active", balance=5000)  # fmt: skip
    assert decide_after_pin(amount=100, **common).code == Code.APPROVED
    assert (
        decide_after_pin(amount=100, daily=DailyUse(count=3, count_limit=3), **common).code
        == Code.EXCEEDS_COUNT_LIMIT
    )
    assert (
        decide_after_pin(amount=100, daily=DailyUse(amount=950, amount_limit=1000), **common).code
        == Code.EXCEEDS_AMOUNT_LIMIT
    )


items_st = st.builds(
    CatalogueItem,
    code=st.just("X"),
    category=st.sampled_from("ABC"),
    self_pay_bp=st.integers(0, 10_000),
).map(lambda i: i if i.category == "B" else CatalogueItem(i.code, i.category, 0))
lines_st = st.lists(
    st.builds(Line, item=items_st, quantity=st.integers(1, 50), unit_price=st.integers(0, 100_000)),
    min_size=1,
    max_size=20,
)
policy_st = st.builds(
    Policy,
    deductible=st.integers(0, 500_000),
    fund_ratio_bp=st.integers(0, 10_000),
    annual_cap=st.integers(0, 5_000_000),
)
used_st = st.builds(
    Accumulators, deductible_used=st.integers(0, 600_000), fund_used=st.integers(0, 6_000_000)
)


@given(
    lines=lines_st,
    covered=st.booleans(),
    policy=st.one_of(st.none(), policy_st),
    used=used_st,
    balance=st.integers(0, 10_000_000),
    account_max=st.one_of(st.none(), st.integers(0, 10_000_000)),
)
def test_split_properties(lines, covered, policy, used, balance, account_max) -> None:
    split = split_purchase(lines, covered=covered, policy=policy, used=used,
                           balance=balance, account_max=account_max)  # fmt: skip
    # The parts add up to the total, and none is negative.
    assert split.fund + split.account + split.cash == split.total
    assert min(split.eligible, split.deductible_applied, split.fund, split.account,
               split.cash) >= 0  # fmt: skip
    # The fund pays at most the eligible amount above the deductible.
    assert split.fund <= split.eligible - split.deductible_applied <= split.total
    assert split.account <= balance
    if account_max is not None:
        assert split.account <= account_max
    if not covered or policy is None:
        assert split.fund == 0 and split.deductible_applied == 0
    else:
        # Neither the deductible nor the annual cap is ever exceeded.
        after = accumulate(used, split)
        assert after.deductible_used <= max(policy.deductible, used.deductible_used)
        assert after.fund_used <= max(policy.annual_cap, used.fund_used)
        assert split.fund <= split.eligible * policy.fund_ratio_bp // 10_000


@given(
    purchases=st.lists(lines_st, min_size=1, max_size=8),
    policy=policy_st,
    undo=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_accumulators_never_negative_and_bounded_over_a_year(purchases, policy, undo) -> None:
    """A year of purchases, some given back whole: the accumulators stay between 0 and the
    policy's deductible and cap, and equal the sums of the splits still standing."""
    used = Accumulators()
    standing = []
    for lines, give_back in zip(purchases, undo, strict=False):
        split = split_purchase(lines, covered=True, policy=policy, used=used, balance=10**9)
        used = accumulate(used, split)
        standing.append(split)
        if give_back:
            gone = standing.pop(0)
            used = Accumulators(used.deductible_used - gone.deductible_applied,
                                used.fund_used - gone.fund)  # fmt: skip
        assert 0 <= used.deductible_used <= policy.deductible
        assert 0 <= used.fund_used <= policy.annual_cap
        assert used.deductible_used == sum(s.deductible_applied for s in standing)
        assert used.fund_used == sum(s.fund for s in standing)
