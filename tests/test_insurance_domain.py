"""Pure rules of the insurance side: no database, milliseconds each."""

from __future__ import annotations

from datetime import date

import pytest

from pos_gateway.domain.contributions import (
    EMPLOYER_SHARE_PERCENT,
    MonthStatus,
    allocation_amount,
    allocation_reference,
    notice_lines,
)
from pos_gateway.domain.coverage import (
    Reason,
    Suspension,
    contribution_refused,
    coverage_on,
    earliest_suspension_month,
)
from pos_gateway.domain.credentials import (
    draw_first_password,
    password_problem,
    weak_pin_reason,
)
from pos_gateway.domain.employment import (
    days_to_register,
    employer_id_valid,
    employment_covers,
    make_employer_id,
    old_enough_to_work,
    registration_late,
)
from pos_gateway.domain.months import add_months, month_count, months_from_to, parse_month

M = date  # months are their first day

# Months ---------------------------------------------------------------------------------


def test_add_months_crosses_years_both_ways() -> None:
    assert add_months(M(2025, 12, 1), 1) == M(2026, 1, 1)
    assert add_months(M(2026, 1, 1), -1) == M(2025, 12, 1)
    assert add_months(M(2026, 3, 1), -15) == M(2024, 12, 1)


def test_months_from_to_is_inclusive() -> None:
    assert months_from_to(M(2025, 11, 1), M(2026, 2, 1)) == [
        M(2025, 11, 1),
        M(2025, 12, 1),
        M(2026, 1, 1),
        M(2026, 2, 1),
    ]
    assert months_from_to(M(2026, 2, 1), M(2026, 1, 1)) == []
    assert month_count(M(2025, 11, 1), M(2026, 2, 1)) == 4


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "26-01", "2026-1", "2026/01"])
def test_parse_month_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_month(text)


# Coverage -------------------------------------------------------------------------------

PAID = [M(2026, 1, 1), M(2026, 2, 1), M(2026, 3, 1)]


def test_covered_in_a_paid_month() -> None:
    result = coverage_on(date(2026, 3, 31), PAID)
    assert result.covered and result.reason == Reason.PAID_FOR_MONTH


def test_first_month_of_an_interruption_is_still_covered() -> None:
    for day in (date(2026, 4, 1), date(2026, 4, 30)):
        result = coverage_on(day, PAID)
        assert result.covered
        assert result.reason == Reason.PAID_FOR_PREVIOUS_MONTH
        assert not result.paid_for_month and result.paid_for_previous_month


def test_coverage_ends_from_the_second_month_of_an_interruption() -> None:
    result = coverage_on(date(2026, 5, 1), PAID)
    assert not result.covered
    assert result.reason == Reason.INTERRUPTED
    assert result.last_paid_month == M(2026, 3, 1)
    assert "2026-03" in result.explanation()


def test_first_paid_month_is_covered_and_the_one_before_is_not() -> None:
    assert coverage_on(date(2026, 1, 1), PAID).covered
    before = coverage_on(date(2025, 12, 31), PAID)
    assert not before.covered and before.reason == Reason.NEVER_PAID


def test_a_gap_of_one_month_keeps_coverage_a_gap_of_two_does_not() -> None:
    one_gap = [M(2026, 1, 1), M(2026, 3, 1)]
    two_gaps = [M(2026, 1, 1), M(2026, 4, 1)]
    assert coverage_on(date(2026, 2, 15), one_gap).covered
    assert coverage_on(date(2026, 2, 15), two_gaps).covered
    assert not coverage_on(date(2026, 3, 15), two_gaps).covered


def test_suspension_month_is_covered_by_the_month_before_then_coverage_ends() -> None:
    suspended = [Suspension(M(2026, 4, 1))]
    in_april = coverage_on(date(2026, 4, 10), PAID, suspended)
    in_may = coverage_on(date(2026, 5, 10), PAID, suspended)
    assert in_april.covered and in_april.suspended_from == M(2026, 4, 1)
    assert not in_may.covered and in_may.reason == Reason.SUSPENDED


def test_contributions_inside_a_suspension_do_not_count() -> None:
    paid = [*PAID, M(2026, 4, 1), M(2026, 5, 1)]  # recorded before the suspension (race)
    suspended = [Suspension(M(2026, 4, 1))]
    assert not coverage_on(date(2026, 5, 10), paid, suspended).covered


def test_resumed_contributions_count_again() -> None:
    suspended = [Suspension(M(2026, 4, 1), resumed_from=M(2026, 7, 1))]
    paid = [*PAID, M(2026, 7, 1)]
    assert coverage_on(date(2026, 7, 1), paid, suspended).covered
    assert coverage_on(date(2026, 8, 1), paid, suspended).covered
    assert not coverage_on(date(2026, 6, 1), paid, suspended).covered


def test_contribution_refused_inside_a_suspension_only() -> None:
    suspended = [Suspension(M(2026, 4, 1), resumed_from=M(2026, 7, 1))]
    assert contribution_refused(M(2026, 3, 1), suspended) is None
    assert contribution_refused(M(2026, 4, 1), suspended) == suspended[0]
    assert contribution_refused(M(2026, 6, 1), suspended) == suspended[0]
    assert contribution_refused(M(2026, 7, 1), suspended) is None
    open_ended = [Suspension(M(2026, 4, 1))]
    assert contribution_refused(M(2030, 1, 1), open_ended) is not None


def test_a_suspension_starts_after_the_last_paid_month_and_not_in_the_past() -> None:
    now = M(2026, 5, 1)
    assert earliest_suspension_month(now, None) == now
    assert earliest_suspension_month(now, M(2026, 3, 1)) == now
    assert earliest_suspension_month(now, M(2026, 5, 1)) == M(2026, 6, 1)
    assert earliest_suspension_month(now, M(2026, 8, 1)) == M(2026, 9, 1)


# Allocation and notices -----------------------------------------------------------------


def test_allocation_is_individual_part_plus_the_employer_share() -> None:
    assert EMPLOYER_SHARE_PERCENT == 30
    assert allocation_amount(60_000, 20_000) == 38_000
    assert allocation_amount(0, 20_000) == 20_000
    assert allocation_amount(60_000, 0) == 18_000


def test_allocation_rounds_the_share_down_never_crediting_more_than_paid() -> None:
    assert allocation_amount(333, 0) == 99  # 99.9 fen: the odd fen stays pooled
    assert allocation_amount(1, 1) == 1
    for employer, individual in [(7, 3), (99_999, 1), (10**12, 10**12)]:
        assert individual <= allocation_amount(employer, individual) <= employer + individual


def test_allocation_refuses_negative_parts() -> None:
    with pytest.raises(ValueError):
        allocation_amount(-1, 0)


def test_allocation_reference_names_the_month() -> None:
    assert allocation_reference(M(2026, 3, 1)) == "allocation 2026-03"


def test_notice_lines_mark_paid_missing_and_suspended_months() -> None:
    months = months_from_to(M(2026, 1, 1), M(2026, 5, 1))
    paid = {M(2026, 1, 1): (600, 200), M(2026, 3, 1): (600, 200)}
    lines = notice_lines(months, paid, [Suspension(M(2026, 5, 1))])
    assert [(line.month.month, line.status) for line in lines] == [
        (1, MonthStatus.PAID),
        (2, MonthStatus.MISSING),
        (3, MonthStatus.PAID),
        (4, MonthStatus.MISSING),
        (5, MonthStatus.SUSPENDED),
    ]
    assert (lines[0].employer_part, lines[0].individual_part) == (600, 200)


# Employment -----------------------------------------------------------------------------


def test_registration_on_day_30_is_in_time_and_day_31_is_late() -> None:
    hired = date(2026, 1, 31)
    assert days_to_register(hired, date(2026, 3, 2)) == 30
    assert not registration_late("employee", hired, date(2026, 3, 2))
    assert registration_late("employee", hired, date(2026, 3, 3))
    assert not registration_late("employee", hired, hired)


def test_flexible_employment_is_never_late() -> None:
    assert not registration_late("flexible", date(2020, 1, 1), date(2026, 1, 1))


def test_working_age_is_sixteen_also_for_29_february_births() -> None:
    assert old_enough_to_work(date(2000, 5, 5), date(2016, 5, 5))
    assert not old_enough_to_work(date(2000, 5, 5), date(2016, 5, 4))
    assert not old_enough_to_work(date(2000, 2, 29), date(2016, 2, 28))
    assert old_enough_to_work(date(2000, 2, 29), date(2016, 3, 1))


def test_employment_covers_months_it_touches() -> None:
    assert employment_covers(date(2026, 1, 31), None, M(2026, 1, 1))
    assert not employment_covers(date(2026, 1, 31), None, M(2025, 12, 1))
    assert employment_covers(date(2026, 1, 1), date(2026, 3, 1), M(2026, 3, 1))
    assert not employment_covers(date(2026, 1, 1), date(2026, 3, 1), M(2026, 4, 1))


def test_unified_social_credit_code_check_character() -> None:
    assert employer_id_valid("91110000600037341L")  # published example (python-stdnum)
    assert not employer_id_valid("91110000600037341M")
    assert not employer_id_valid("91110000600037341")
    assert not employer_id_valid("9111000060003734IL")  # I is not in the alphabet
    made = make_employer_id("91110105ABCDEFGHJ")
    assert employer_id_valid(made) and len(made) == 18


# Credentials ----------------------------------------------------------------------------

SSN = "110105196008081013"
BIRTH = date(1960, 8, 8)
PAN = "6217990000000000102"


def test_first_passwords_are_random_and_not_the_card_digits() -> None:
    drawn = {draw_first_password() for _ in range(200)}
    assert len(drawn) == 200
    for password in drawn:
        assert PAN[-6:] not in password and PAN[-4:] not in password.replace("-", "")
        assert password_problem(password, ssn=SSN, birth_date=BIRTH) is None


@pytest.mark.parametrize(
    "password",
    [
        "short1",  # too short
        "a" * 65 + "1",  # too long
        "onlyletters",
        "1234567890",
        "Über-sicher1",  # not ASCII
        "ab" + SSN[:17],
        "my19600808pw",  # birth date
    ],
)
def test_weak_or_malformed_passwords_are_refused(password: str) -> None:
    assert password_problem(password, ssn=SSN, birth_date=BIRTH) is not None


def test_a_reasonable_password_is_accepted() -> None:
    assert password_problem("Spring-rain-42", ssn=SSN, birth_date=BIRTH) is None


@pytest.mark.parametrize(
    "pin",
    [
        "000000",
        "999999",
        "1111",
        "123456",
        "654321",
        "234567",
        "901234",  # ascending with wrap-around
        "0987",
        "121212",
        "123123",
        "600808",  # YYMMDD
        "080860",  # DDMMYY
        "19600808",
        "0808",
        "1960",
        "081013",  # last digits of the ID number
        "000102",  # last digits of the card
    ],
)
def test_trivially_weak_pins_are_refused(pin: str) -> None:
    assert weak_pin_reason(pin, birth_date=BIRTH, ssn=SSN, pan=PAN) is not None


@pytest.mark.parametrize("pin", ["739154", "2580", "31415926", "402917"])
def test_ordinary_pins_are_accepted(pin: str) -> None:
    assert weak_pin_reason(pin, birth_date=BIRTH, ssn=SSN, pan=PAN) is None
