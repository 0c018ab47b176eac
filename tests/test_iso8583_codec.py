"""ISO 8583 codec, AES-CMAC and message mapping (DESIGN §9): pure, no database."""

from __future__ import annotations

from datetime import date

import pytest

from pos_gateway.domain.local_dates import nearest_date
from pos_gateway.errors import InvalidInput
from pos_gateway.iso8583 import codec, messages
from terminal_sim import iso as sim_iso

KEY = bytes(range(32))

# NIST SP 800-38B, appendix D (D.1 AES-128, D.3 AES-256): examples 1-4 of each.
_NIST_MESSAGE = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
_AES128 = "2b7e151628aed2a6abf7158809cf4f3c"
_AES256 = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
NIST_VECTORS = [
    (_AES128, 0, "bb1d6929e95937287fa37d129b756746"),
    (_AES128, 16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (_AES128, 40, "dfa66747de9ae63030ca32611497c827"),
    (_AES128, 64, "51f0bebf7e3b9d92fc49741779363cfe"),
    (_AES256, 0, "028962f61b7bf89efc6b551f4667d983"),
    (_AES256, 16, "28a7023f452e8f82bd4bf28d8c37c35c"),
    (_AES256, 40, "aaf3d8f1de5640c232f5b169b9c911e6"),
    (_AES256, 64, "e1992190549f6ed5696a2c056c315410"),
]


@pytest.mark.parametrize(("key", "length", "tag"), NIST_VECTORS)
def test_aes_cmac_matches_nist_sp800_38b(key: str, length: int, tag: str) -> None:
    message = _NIST_MESSAGE[:length]
    assert codec.aes_cmac(bytes.fromhex(key), message).hex() == tag
    assert sim_iso.cmac(bytes.fromhex(key), message).hex() == tag  # the simulator's own
    assert codec.message_mac(bytes.fromhex(key), message) == bytes.fromhex(tag)[:8]


PURCHASE = {
    "t": "0200", "2": "6217000000000000018", "3": "000000", "4": "000000001250",
    "11": "000123", "12": "101500", "13": "1124", "41": "PHARM001", "49": "156",
    "52": "00112233445566778899AABBCCDDEEFF",
}  # fmt: skip
REVERSAL = {
    "t": "0400", "3": "000000", "11": "000124", "12": "101600", "13": "1124",
    "41": "PHARM001", "90": "0200000123" + "1124101500" + "0" * 22,
}  # fmt: skip
BATCH_CLOSE = {
    "t": "0500", "3": "920000", "11": "000125", "41": "PHARM001", "60": "000007",
    "74": "0000000001", "76": "0000000012", "86": "0000000000000800",
    "88": "0000000000045600",
}  # fmt: skip
SIGN_ON = {"t": "0800", "11": "000126", "41": "PHARM001", "70": "001"}


@pytest.mark.parametrize("fields", [PURCHASE, REVERSAL, BATCH_CLOSE, SIGN_ON])
def test_codec_round_trip_with_mac(fields: dict[str, str]) -> None:
    raw = codec.encode(fields, KEY)
    decoded = codec.decode(raw)
    mac_field = "128" if "1" in decoded else "64"
    # Field 128 exactly when some field above 64 is present (a secondary bitmap).
    assert (mac_field == "128") == any(64 < int(k) < 128 for k in fields if k.isdigit())
    assert {k: v for k, v in decoded.items() if k not in ("p", "1", mac_field)} == fields
    assert codec.mac_is_valid(raw, decoded, KEY)
    assert bytes.fromhex(decoded[mac_field]) == codec.message_mac(KEY, raw[:-8])
    # The simulator's codec is another implementation of the same bytes.
    assert sim_iso.encode(fields, KEY) == raw
    assert sim_iso.decode(raw) == decoded


def test_field_52_is_16_bytes_binary_and_64_is_8() -> None:
    raw = codec.encode(PURCHASE, KEY)
    assert bytes.fromhex(PURCHASE["52"]) + codec.message_mac(KEY, raw[:-8]) == raw[-24:]
    with pytest.raises(Exception, match="16"):
        codec.encode({**PURCHASE, "52": "00" * 8}, KEY)


@pytest.mark.parametrize("position", [0, 4, 12, 30, -9])
def test_mac_fails_when_any_covered_byte_changes(position: int) -> None:
    raw = bytearray(codec.encode(PURCHASE, KEY))
    raw[position] ^= 0x01
    try:
        decoded = codec.decode(bytes(raw))
    except codec.DecodeError:
        return  # the change broke the structure itself: the listener closes the connection
    assert not codec.mac_is_valid(bytes(raw), decoded, KEY)


def test_mac_under_another_key_or_missing_is_invalid() -> None:
    raw = codec.encode(PURCHASE, KEY)
    assert not codec.mac_is_valid(raw, codec.decode(raw), bytes(32))
    unsigned = codec.encode(PURCHASE, None)
    assert not codec.mac_is_valid(unsigned, codec.decode(unsigned), KEY)


@pytest.mark.parametrize(
    "raw",
    [b"", b"02", b"0200", b"02x0" + bytes(8), codec.encode(PURCHASE, KEY) + b"x",
     codec.encode(PURCHASE, KEY)[:-3], b"0800\xff" + bytes(7)],
)  # fmt: skip
def test_undecodable_messages_raise_decode_error(raw: bytes) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(raw)


def test_frame_is_two_byte_big_endian_length() -> None:
    assert codec.frame(b"x" * 300) == b"\x01\x2c" + b"x" * 300
    with pytest.raises(ValueError):
        codec.frame(b"x" * 2049)


@pytest.mark.parametrize(
    ("month", "day", "business", "expected"),
    [
        (11, 24, date(2026, 11, 24), date(2026, 11, 24)),
        (12, 31, date(2027, 1, 1), date(2026, 12, 31)),  # the terminal is still in last year
        (1, 1, date(2026, 12, 31), date(2027, 1, 1)),  # or already in the next
        (2, 29, date(2028, 3, 1), date(2028, 2, 29)),
        (2, 29, date(2026, 11, 24), None),  # no leap year within reach
        (2, 30, date(2026, 11, 24), None),
    ],
)
def test_local_date_takes_the_year_nearest_the_business_date(
    month: int, day: int, business: date, expected: date | None
) -> None:
    assert nearest_date(month, day, business) == expected


BUSINESS = date(2026, 11, 24)


def test_purchase_maps_to_the_gateways_request() -> None:
    request = messages.parse_transaction(PURCHASE, BUSINESS)
    assert (request.txn_type, request.stan, request.local_date) == (
        "purchase", "000123", date(2026, 11, 24),
    )  # fmt: skip
    assert (request.pan, request.amount) == ("6217000000000000018", 1250)
    assert request.pin_block == bytes.fromhex(PURCHASE["52"])


def test_identity_ignores_time_of_day_and_pin_block() -> None:
    one = messages.parse_transaction(PURCHASE, BUSINESS)
    other = messages.parse_transaction({**PURCHASE, "12": "235959", "52": "FF" * 16}, BUSINESS)
    more = messages.parse_transaction({**PURCHASE, "4": "000000001251"}, BUSINESS)
    assert one.content_hash == other.content_hash != more.content_hash


@pytest.mark.parametrize(
    ("code", "txn_type"),
    [("000000", "purchase"), ("310000", "balance_inquiry"), ("200000", "refund"),
     ("010000", "cash_withdrawal"), ("011000", "cash_withdrawal"), ("400000", "transfer"),
     ("401020", "transfer")],
)  # fmt: skip
def test_processing_codes(code: str, txn_type: str) -> None:
    fields = {**PURCHASE, "3": code, "37": "123456789012"}
    assert messages.parse_transaction(fields, BUSINESS).txn_type == txn_type


def test_reversal_reads_field_90() -> None:
    request = messages.parse_transaction(REVERSAL, BUSINESS)
    assert (request.txn_type, request.original_stan, request.original_local_date) == (
        "reversal", "000123", date(2026, 11, 24),
    )  # fmt: skip
    assert messages.parse_transaction({**REVERSAL, "t": "0401"}, BUSINESS).txn_type == "reversal"


def test_refund_takes_the_original_rrn_from_37() -> None:
    fields = {k: v for k, v in PURCHASE.items() if k != "52"}
    request = messages.parse_transaction({**fields, "3": "200000", "37": "000000000042"}, BUSINESS)
    assert (request.txn_type, request.original_rrn, request.pin_block) == (
        "refund", "000000000042", None,
    )  # fmt: skip


def _without(fields: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k != name}


@pytest.mark.parametrize(
    "fields",
    [
        _without(PURCHASE, "4"), _without(PURCHASE, "52"), _without(PURCHASE, "2"),
        _without(PURCHASE, "11"), _without(PURCHASE, "13"), _without(PURCHASE, "49"),
        {**PURCHASE, "3": "990000"}, {**PURCHASE, "3": "00000A"}, {**PURCHASE, "4": "0000000012.5"},
        {**PURCHASE, "49": "840"}, {**PURCHASE, "2": "62170000000"}, {**PURCHASE, "12": "250000"},
        {**PURCHASE, "13": "1332"}, {**PURCHASE, "13": "0230"}, {**PURCHASE, "11": "00012a"},
        {**PURCHASE, "3": "200000"},  # a refund without 37
        _without(REVERSAL, "90"), {**REVERSAL, "90": "0100" + REVERSAL["90"][4:]},
        {**REVERSAL, "90": REVERSAL["90"][:-1] + "1"},
    ],
)  # fmt: skip
def test_missing_or_bad_fields_are_format_errors(fields: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        messages.parse_transaction(fields, BUSINESS)


@pytest.mark.parametrize(
    "fields",
    [_without(BATCH_CLOSE, "60"), {**BATCH_CLOSE, "60": "7"}, {**BATCH_CLOSE, "60": "000000"},
     _without(BATCH_CLOSE, "88"), {**BATCH_CLOSE, "76": "00000000x1"}],
)  # fmt: skip
def test_bad_batch_close_is_a_format_error(fields: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        messages.parse_batch_close(fields)


def test_batch_close_reads_its_figures() -> None:
    batch_no, figures, _ = messages.parse_batch_close(BATCH_CLOSE)
    assert batch_no == 7
    assert figures == {
        "purchases": {"count": 12, "amount": 45600},
        "refunds": {"count": 1, "amount": 800},
    }


def test_answer_fields_of_an_approved_purchase() -> None:
    answer = {
        "response_code": "00", "approved": True, "rrn": "000000000042", "auth_code": "123456",
        "amount": 1250, "balance": 8750, "stan": "000123",
    }  # fmt: skip
    out = messages.transaction_answer(PURCHASE, answer)
    assert out == {
        "t": "0210", "3": "000000", "4": "000000001250", "11": "000123", "12": "101500",
        "13": "1124", "37": "000000000042", "38": "123456", "39": "00", "41": "PHARM001",
        "54": "0002156C000000008750",
    }  # fmt: skip
    declined = messages.transaction_answer(
        {**PURCHASE, "t": "0201"}, {"response_code": "51", "approved": False, "rrn": "1" * 12}
    )
    assert declined["t"] == "0210" and "38" not in declined and declined["39"] == "51"


def test_answer_mti_is_the_requests_plus_ten() -> None:
    assert [messages.answer_mti(m) for m in ("0200", "0201", "0400", "0401", "0500", "0800")] == [
        "0210", "0210", "0410", "0410", "0510", "0810",
    ]  # fmt: skip


def test_simulator_shows_fields_with_pan_masked_and_secrets_elided() -> None:
    text = sim_iso.describe_fields(codec.decode(codec.encode(PURCHASE, KEY)))
    assert "621700*********0018" in text and "6217000000000000018" not in text
    assert PURCHASE["52"] not in text and "<PIN block>" in text and "<MAC>" in text


def test_random_bytes_decode_or_raise_decode_error_only() -> None:
    import random

    rng = random.Random(8583)
    good = codec.encode(PURCHASE, KEY)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(3000):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        tail = rng.choice([b"", bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))])
        try:
            codec.decode(bytes(raw[: rng.randint(0, len(raw))] + tail))
        except codec.DecodeError:
            outcomes["refused"] += 1
        else:
            outcomes["decoded"] += 1
    # Any other exception would have ended the loop; both outcomes were exercised.
    assert outcomes["decoded"] > 0 and outcomes["refused"] > 0, outcomes
