"""Pure domain rules (pos_gateway/domain/): no database, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from pos_gateway.domain.cards import (
    card_expired,
    last_day_of_month,
    luhn_check_digit,
    luhn_valid,
    mask_pan,
    pan_well_formed,
)
from pos_gateway.domain.citizen_id import (
    InvalidCitizenId,
    check_character,
    is_valid_citizen_id,
    make_citizen_id,
    parse_citizen_id,
)
from pos_gateway.domain.decisions import (
    CardStanding,
    Code,
    MerchantStanding,
    decide_before_pin,
    decide_wrong_pin,
)
from pos_gateway.domain.money import MAX_FEN, format_fen, is_fen_amount

# --- cards.py: Luhn --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partial", "digit"),
    [
        ("7992739871", "3"),  # the textbook example 79927398713
        ("411111111111111", "1"),  # 4111 1111 1111 1111, the usual Visa test number
        ("621700000000000001", "2"),
        ("0", "0"),
        ("", "0"),
    ],
)
def test_luhn_check_digit_matches_known_numbers(partial: str, digit: str) -> None:
    assert luhn_check_digit(partial) == digit


@pytest.mark.parametrize(
    "number", ["79927398713", "4111111111111111", "6217000000000000012", "5555555555554444"]
)
def test_luhn_valid_accepts_known_valid_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "number",
    [
        "79927398710",
        "79927398714",
        "4111111111111112",
        "6217000000000000018",
        "79927398731",  # two adjacent digits swapped
    ],
)
def test_luhn_valid_rejects_wrong_check_digit(number: str) -> None:
    assert not luhn_valid(number)


def test_luhn_valid_rejects_every_single_digit_change() -> None:
    valid = "6217000000000000012"
    for position in range(len(valid)):
        for replacement in "0123456789":
            if replacement == valid[position]:
                continue
            changed = valid[:position] + replacement + valid[position + 1 :]
            assert not luhn_valid(changed), changed


@pytest.mark.parametrize(
    "number",
    [
        "",
        "0",
        "7",
        "7992739871a",
        "7992 7398 713",
        "-79927398713",
        "+79927398713",
        "79927398713\n",
        "７９９２７３９８７１３",  # full-width digits: str.isdigit() is True for them
        "٧٩٩٢٧٣٩٨٧١٣",  # Arabic-Indic digits
    ],
)
def test_luhn_valid_rejects_non_digits_and_short_strings(number: str) -> None:
    assert not luhn_valid(number)


def test_luhn_valid_accepts_two_digit_minimum() -> None:
    assert luhn_valid("00")
    assert luhn_valid("18")
    assert not luhn_valid("19")


# --- cards.py: PAN shape, masking, expiry ----------------------------------------------


@pytest.mark.parametrize("length", [16, 17, 18, 19])
def test_pan_well_formed_accepts_16_to_19_digits(length: int) -> None:
    assert pan_well_formed("6" * length)


@pytest.mark.parametrize(
    "pan",
    [
        "6" * 15,
        "6" * 20,
        "",
        "621700000000000001X",
        "6217 0000 0000 0000",
        " 6217000000000000012",
        "６２１７０００００００００００００１２",  # full-width digits
    ],
)
def test_pan_well_formed_rejects_other_shapes(pan: str) -> None:
    assert not pan_well_formed(pan)


def test_pan_well_formed_rejects_a_trailing_newline() -> None:
    # re's '$' also matches just before a final newline; the whole string must be digits.
    assert not pan_well_formed("6217000000000000012\n")


def test_pan_well_formed_does_not_check_luhn() -> None:
    assert pan_well_formed("6217000000000000018")


@pytest.mark.parametrize(
    ("pan", "masked"),
    [
        ("6217000000000000012", "621700*********0012"),
        ("4111111111111111", "411111******1111"),
        ("12345678901", "123456*8901"),
    ],
)
def test_mask_pan_keeps_first_six_and_last_four(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked
    assert len(mask_pan(pan)) == len(pan)


@pytest.mark.parametrize("pan", ["1234567890", "1234", ""])
def test_mask_pan_hides_everything_when_too_short_to_keep_ten(pan: str) -> None:
    assert mask_pan(pan) == "*" * len(pan)


def test_card_is_valid_through_its_expiry_day() -> None:
    expires = date(2027, 3, 31)
    assert not card_expired(expires, date(2027, 3, 30))
    assert not card_expired(expires, expires)
    assert card_expired(expires, date(2027, 4, 1))
    assert card_expired(expires, date(2030, 1, 1))


@pytest.mark.parametrize(
    ("year", "month", "last"),
    [
        (2026, 1, date(2026, 1, 31)),
        (2026, 4, date(2026, 4, 30)),
        (2026, 11, date(2026, 11, 30)),
        (2026, 12, date(2026, 12, 31)),
        (2025, 2, date(2025, 2, 28)),
        (2024, 2, date(2024, 2, 29)),
        (2000, 2, date(2000, 2, 29)),  # divisible by 400: leap
        (1900, 2, date(1900, 2, 28)),  # divisible by 100 only: not leap
        (2099, 12, date(2099, 12, 31)),
    ],
)
def test_last_day_of_month(year: int, month: int, last: date) -> None:
    assert last_day_of_month(year, month) == last


def test_last_day_of_month_is_followed_by_the_first_of_the_next_month() -> None:
    for month in range(1, 13):
        last = last_day_of_month(2028, month)
        assert last.month == month
        assert (last + timedelta(days=1)).day == 1


# --- citizen_id.py ---------------------------------------------------------------------


def test_check_character_of_the_gb11643_standard_examples() -> None:
    # The examples printed in GB 11643-1999 itself.
    assert check_character("11010519491231002") == "X"
    assert check_character("44052418800101001") == "4"


def test_parse_citizen_id_of_a_valid_number() -> None:
    first17 = "11010819900307271"
    number = first17 + check_character(first17)

    parsed = parse_citizen_id(number)

    assert parsed.number == number
    assert parsed.birth_date == date(1990, 3, 7)
    assert parsed.sex == "male"


def test_parse_citizen_id_with_check_character_x() -> None:
    parsed = parse_citizen_id("11010519491231002X")

    assert parsed.number == "11010519491231002X"
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.sex == "female"


def test_parse_citizen_id_accepts_lowercase_x_and_normalizes_it() -> None:
    parsed = parse_citizen_id("11010519491231002x")

    assert parsed.number == "11010519491231002X"
    assert is_valid_citizen_id("11010519491231002x")


@pytest.mark.parametrize("wrong", "0123456789")
def test_parse_citizen_id_rejects_wrong_check_character(wrong: str) -> None:
    # The right check character is X, so every digit is wrong.
    with pytest.raises(InvalidCitizenId):
        parse_citizen_id("11010519491231002" + wrong)
    assert not is_valid_citizen_id("11010519491231002" + wrong)


def test_parse_citizen_id_rejects_x_where_a_digit_is_expected() -> None:
    with pytest.raises(InvalidCitizenId):
        parse_citizen_id("44052418800101001X")


def test_parse_citizen_id_rejects_every_single_digit_change() -> None:
    valid = "440524188001010014"
    for position in range(17):
        for replacement in "0123456789":
            if replacement == valid[position]:
                continue
            changed = valid[:position] + replacement + valid[position + 1 :]
            assert not is_valid_citizen_id(changed), changed


@pytest.mark.parametrize(
    "birth",
    ["19900230", "19900431", "19901301", "19900001", "19900100", "19000229", "20230229"],
)
def test_parse_citizen_id_rejects_impossible_birth_date(birth: str) -> None:
    # The check character is right, so only the date can be the reason.
    first17 = f"110105{birth}123"
    number = first17 + check_character(first17)

    with pytest.raises(InvalidCitizenId):
        parse_citizen_id(number)
    assert not is_valid_citizen_id(number)


def test_parse_citizen_id_accepts_february_29_of_a_leap_year() -> None:
    first17 = "11010520000229123"
    assert parse_citizen_id(first17 + check_character(first17)).birth_date == date(2000, 2, 29)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "11010519491231002",  # 17 characters
        "11010519491231002X0",  # 19 characters
        "11010519491231002X\n0",
        "X1010519491231002X",
        "1101051949123100XX",
        "11010519491231002Y",
        "110105 19491231002X",
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width
    ],
)
def test_parse_citizen_id_rejects_bad_shapes(text: str) -> None:
    with pytest.raises(InvalidCitizenId):
        parse_citizen_id(text)


@pytest.mark.parametrize(
    ("sequence", "sex"),
    [(1, "male"), (2, "female"), (123, "male"), (998, "female"), (0, "female"), (999, "male")],
)
def test_sex_comes_from_the_17th_digit(sequence: int, sex: str) -> None:
    number = make_citizen_id("320102", date(1985, 6, 15), sequence)

    assert int(number[16]) == sequence % 10
    assert parse_citizen_id(number).sex == sex


@pytest.mark.parametrize(
    ("region", "birth", "sequence"),
    [
        ("110105", date(1949, 12, 31), 2),
        ("440524", date(1880, 1, 1), 1),
        ("650102", date(2024, 2, 29), 999),
        ("320102", date(1999, 12, 31), 0),
    ],
)
def test_make_citizen_id_round_trips_through_parse(region: str, birth: date, sequence: int) -> None:
    number = make_citizen_id(region, birth, sequence)

    parsed = parse_citizen_id(number)

    assert len(number) == 18
    assert number.startswith(f"{region}{birth:%Y%m%d}{sequence:03d}")
    assert parsed.number == number
    assert parsed.birth_date == birth
    assert parsed.sex == ("male" if sequence % 2 else "female")


def test_make_citizen_id_reproduces_the_standard_example() -> None:
    assert make_citizen_id("110105", date(1949, 12, 31), 2) == "11010519491231002X"


# --- money.py --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 1250, MAX_FEN])
def test_is_fen_amount_accepts_non_negative_ints(value: int) -> None:
    assert is_fen_amount(value)


@pytest.mark.parametrize(
    "value",
    [True, False, 12.5, 1.0, 0.0, -1, -1250, "1250", "12.50", None, MAX_FEN + 1, [1250]],
)
def test_is_fen_amount_rejects_bools_floats_negatives_and_strings(value: object) -> None:
    assert not is_fen_amount(value)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (1250, "12.50"),
        (0, "0.00"),
        (1, "0.01"),
        (99, "0.99"),
        (100, "1.00"),
        (-1, "-0.01"),
        (-1250, "-12.50"),
        (123456789, "1234567.89"),
    ],
)
def test_format_fen(amount: int, text: str) -> None:
    assert format_fen(amount) == text


# --- decisions.py ----------------------------------------------------------------------

TODAY = date(2026, 11, 24)
MAX_AMOUNT = 500_000
GOOD_MERCHANT = MerchantStanding(
    designated_from=TODAY - timedelta(days=365),
    designated_until=TODAY + timedelta(days=365),
    suspended=False,
)
GOOD_CARD = CardStanding(
    status="active",
    expires_on=TODAY + timedelta(days=700),
    pin_failures=0,
    account_status="active",
)


def decide(**overrides: object) -> Code | None:
    arguments: dict[str, object] = {
        "txn_type": "purchase",
        "amount": 1250,
        "max_amount": MAX_AMOUNT,
        "merchant": GOOD_MERCHANT,
        "card": GOOD_CARD,
        "pan_luhn_ok": True,
        "today": TODAY,
    }
    arguments.update(overrides)
    return decide_before_pin(**arguments)  # type: ignore[arg-type]


# Everything that could be wrong at once, to show which check wins.
BAD_MERCHANT = replace(GOOD_MERCHANT, suspended=True)
BAD_CARD = CardStanding(
    status="lost", expires_on=TODAY - timedelta(days=1), pin_failures=3, account_status="frozen"
)


@pytest.mark.parametrize("txn_type", ["purchase", "balance_inquiry"])
def test_decide_before_pin_is_none_when_all_is_fine(txn_type: str) -> None:
    assert decide(txn_type=txn_type) is None


@pytest.mark.parametrize("txn_type", ["cash_withdrawal", "transfer"])
def test_refused_types_are_57_before_everything_else(txn_type: str) -> None:
    assert decide(txn_type=txn_type) == Code.NOT_PERMITTED
    assert (
        decide(
            txn_type=txn_type,
            amount=0,
            merchant=BAD_MERCHANT,
            card=BAD_CARD,
            pan_luhn_ok=False,
        )
        == Code.NOT_PERMITTED
    )
    assert decide(txn_type=txn_type, card=None, amount=None) == Code.NOT_PERMITTED


def test_code_57_is_the_iso_value() -> None:
    assert Code.NOT_PERMITTED == "57"
    assert Code.MERCHANT_NOT_DESIGNATED == "03"


@pytest.mark.parametrize(
    "merchant",
    [
        pytest.param(
            replace(GOOD_MERCHANT, designated_from=TODAY + timedelta(days=1)), id="not-started"
        ),
        pytest.param(
            replace(GOOD_MERCHANT, designated_until=TODAY - timedelta(days=1)), id="ended"
        ),
        pytest.param(replace(GOOD_MERCHANT, suspended=True), id="suspended"),
    ],
)
def test_merchant_not_designated_is_03(merchant: MerchantStanding) -> None:
    assert decide(merchant=merchant) == Code.MERCHANT_NOT_DESIGNATED
    # Merchant standing comes before amount and card checks.
    assert (
        decide(merchant=merchant, amount=0, card=BAD_CARD, pan_luhn_ok=False)
        == Code.MERCHANT_NOT_DESIGNATED
    )
    assert decide(merchant=merchant, txn_type="balance_inquiry") == Code.MERCHANT_NOT_DESIGNATED


def test_designation_validity_is_inclusive_at_both_ends() -> None:
    first_day = MerchantStanding(
        designated_from=TODAY, designated_until=TODAY + timedelta(1), suspended=False
    )
    last_day = MerchantStanding(
        designated_from=TODAY - timedelta(1), designated_until=TODAY, suspended=False
    )
    single_day = MerchantStanding(designated_from=TODAY, designated_until=TODAY, suspended=False)

    assert decide(merchant=first_day) is None
    assert decide(merchant=last_day) is None
    assert decide(merchant=single_day) is None
    assert decide(merchant=replace(single_day, suspended=True)) == Code.MERCHANT_NOT_DESIGNATED


@pytest.mark.parametrize("amount", [0, MAX_AMOUNT + 1, -1, None])
def test_purchase_with_zero_or_over_limit_amount_is_13(amount: int | None) -> None:
    assert decide(amount=amount) == Code.INVALID_AMOUNT
    # Amount comes before card checks.
    assert decide(amount=amount, card=BAD_CARD, pan_luhn_ok=False) == Code.INVALID_AMOUNT


def test_purchase_at_exactly_the_limit_is_allowed() -> None:
    assert decide(amount=MAX_AMOUNT) is None
    assert decide(amount=1) is None


@pytest.mark.parametrize("amount", [None, 0, MAX_AMOUNT + 1])
def test_balance_inquiry_is_not_checked_for_amount(amount: int | None) -> None:
    assert decide(txn_type="balance_inquiry", amount=amount) is None


def test_unknown_card_is_14() -> None:
    assert decide(card=None) == Code.INVALID_CARD
    assert decide(card=None, pan_luhn_ok=False) == Code.INVALID_CARD
    assert decide(card=None, txn_type="balance_inquiry", amount=None) == Code.INVALID_CARD


def test_bad_luhn_is_14_even_for_a_known_card() -> None:
    assert decide(pan_luhn_ok=False) == Code.INVALID_CARD
    # Before the card's own standing.
    assert decide(pan_luhn_ok=False, card=BAD_CARD) == Code.INVALID_CARD


@pytest.mark.parametrize("status", ["lost", "replaced"])
def test_lost_or_replaced_card_is_41(status: str) -> None:
    assert decide(card=replace(GOOD_CARD, status=status)) == Code.LOST_CARD
    # Before expiry, PIN lock and account freeze.
    assert decide(card=replace(BAD_CARD, status=status)) == Code.LOST_CARD


def test_expired_card_is_54_and_valid_on_its_expiry_day() -> None:
    assert decide(card=replace(GOOD_CARD, expires_on=TODAY - timedelta(days=1))) == (
        Code.EXPIRED_CARD
    )
    assert decide(card=replace(GOOD_CARD, expires_on=TODAY)) is None
    # Before PIN lock and account freeze.
    assert decide(card=replace(BAD_CARD, status="active")) == Code.EXPIRED_CARD


@pytest.mark.parametrize(("failures", "code"), [(0, None), (2, None), (3, Code.PIN_TRIES_EXCEEDED)])
def test_pin_locked_card_is_75_from_three_failures(failures: int, code: Code | None) -> None:
    assert decide(card=replace(GOOD_CARD, pin_failures=failures)) == code


def test_pin_lock_comes_before_frozen_account() -> None:
    card = replace(GOOD_CARD, pin_failures=3, account_status="frozen")
    assert decide(card=card) == Code.PIN_TRIES_EXCEEDED


def test_frozen_account_is_62() -> None:
    card = replace(GOOD_CARD, account_status="frozen")
    assert decide(card=card) == Code.RESTRICTED_CARD
    assert decide(card=card, txn_type="balance_inquiry") == Code.RESTRICTED_CARD


@pytest.mark.parametrize(
    ("failures_after", "code"),
    [(1, Code.INCORRECT_PIN), (2, Code.INCORRECT_PIN), (3, Code.PIN_TRIES_EXCEEDED)],
)
def test_decide_wrong_pin(failures_after: int, code: Code) -> None:
    assert decide_wrong_pin(failures_after) == code
    assert decide_wrong_pin(failures_after) == {1: "55", 2: "55", 3: "75"}[failures_after]


@pytest.mark.parametrize("birth", ["18791231", "21000101", "99991231"])
def test_citizen_id_birth_year_outside_living_range_is_refused(birth: str) -> None:
    first17 = f"110105{birth}123"

    with pytest.raises(InvalidCitizenId, match="birth year"):
        parse_citizen_id(first17 + check_character(first17))
