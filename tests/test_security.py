"""PIN blocks and hashes, request signing and key wrapping (pos_gateway/security/)."""

from __future__ import annotations

import hashlib
import hmac

import argon2
import pytest
from psec.pinblock import encipher_pinblock_iso_4

from pos_gateway.security import signing
from pos_gateway.security.keys import (
    MAC_KEY_BYTES,
    PIN_KEY_BYTES,
    KeyUnwrapError,
    KeyWrapper,
    TerminalKeys,
)
from pos_gateway.security.pins import (
    Argon2Params,
    PinBlockError,
    PinHasher,
    decipher_pin_block,
    generate_pin,
    pin_acceptable,
)
from terminal_sim import protocol

# --- PIN blocks (ISO 9564-1 format 4) ----------------------------------------------------

PSEC_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
PSEC_PAN = "1234567890123456"
PSEC_BLOCK = bytes.fromhex("E4BE5B623AF7E006AC319E5B93544564")

PIN_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
OTHER_PIN_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
PAN = "6217000000000000012"


def test_decipher_pin_block_of_the_psec_documented_vector() -> None:
    assert decipher_pin_block(PSEC_KEY, PSEC_BLOCK, PSEC_PAN) == "1234"


@pytest.mark.parametrize("length", range(4, 13))
def test_decipher_pin_block_round_trips_with_psec_encipher(length: int) -> None:
    pin = "9876543210987"[:length]

    block = encipher_pinblock_iso_4(PIN_KEY, pin, PAN)

    assert len(block) == 16
    assert decipher_pin_block(PIN_KEY, block, PAN) == pin


def test_decipher_pin_block_round_trips_with_the_terminal_simulator() -> None:
    block = bytes.fromhex(protocol.pin_block(PIN_KEY, "4321", PAN))

    assert decipher_pin_block(PIN_KEY, block, PAN) == "4321"


def test_pin_blocks_of_one_pin_differ_but_both_decipher() -> None:
    # Format 4 pads with random bytes: the same PIN never gives the same block twice.
    first = encipher_pinblock_iso_4(PIN_KEY, "4321", PAN)
    second = encipher_pinblock_iso_4(PIN_KEY, "4321", PAN)

    assert first != second
    assert decipher_pin_block(PIN_KEY, first, PAN) == "4321"
    assert decipher_pin_block(PIN_KEY, second, PAN) == "4321"


@pytest.mark.parametrize(
    "other_pan", ["6217000000000000020", "1234567890123456", "62170000000000000"]
)
def test_pin_block_for_another_pan_is_refused(other_pan: str) -> None:
    block = encipher_pinblock_iso_4(PIN_KEY, "4321", PAN)

    with pytest.raises(PinBlockError):
        decipher_pin_block(PIN_KEY, block, other_pan)


def test_psec_vector_with_another_pan_is_refused() -> None:
    with pytest.raises(PinBlockError):
        decipher_pin_block(PSEC_KEY, PSEC_BLOCK, "1234567890123457")


def test_pin_block_under_another_key_is_refused() -> None:
    block = encipher_pinblock_iso_4(PIN_KEY, "4321", PAN)

    with pytest.raises(PinBlockError):
        decipher_pin_block(OTHER_PIN_KEY, block, PAN)
    with pytest.raises(PinBlockError):
        decipher_pin_block(OTHER_PIN_KEY, PSEC_BLOCK, PSEC_PAN)


def test_pin_block_error_does_not_quote_the_deciphered_block() -> None:
    block = encipher_pinblock_iso_4(PIN_KEY, "4321", PAN)

    with pytest.raises(PinBlockError) as caught:
        decipher_pin_block(OTHER_PIN_KEY, block, PAN)

    assert "`" not in str(caught.value)
    assert str(caught.value) == "PIN block does not decipher to a format-4 PIN field"


@pytest.mark.parametrize("length", [0, 8, 15, 17, 32])
def test_pin_block_of_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(PinBlockError):
        decipher_pin_block(PSEC_KEY, (PSEC_BLOCK * 2)[:length], PSEC_PAN)


def test_pin_block_error_is_a_value_error() -> None:
    assert issubclass(PinBlockError, ValueError)


# --- PIN hashing -------------------------------------------------------------------------

CHEAP = Argon2Params(time_cost=1, memory_cost_kib=64, parallelism=1)
PEPPER_A = b"A" * 32
PEPPER_B = b"B" * 32


@pytest.fixture(scope="module")
def hasher() -> PinHasher:
    return PinHasher(PEPPER_A, CHEAP)


def test_pin_hash_verifies_the_right_pin_only(hasher: PinHasher) -> None:
    pin_hash = hasher.hash("4321")

    assert hasher.verify(pin_hash, "4321")
    assert not hasher.verify(pin_hash, "4322")
    assert not hasher.verify(pin_hash, "43210")
    assert not hasher.verify(pin_hash, "")


def test_pin_hash_is_argon2id_with_the_given_parameters(hasher: PinHasher) -> None:
    pin_hash = hasher.hash("4321")

    assert pin_hash.startswith("$argon2id$")
    assert "m=64,t=1,p=1" in pin_hash
    assert "4321" not in pin_hash


def test_pin_hashes_are_salted(hasher: PinHasher) -> None:
    first, second = hasher.hash("4321"), hasher.hash("4321")

    assert first != second
    assert hasher.verify(first, "4321") and hasher.verify(second, "4321")


def test_pin_hash_depends_on_the_pepper(hasher: PinHasher) -> None:
    pin_hash = hasher.hash("4321")
    other = PinHasher(PEPPER_B, CHEAP)

    assert not other.verify(pin_hash, "4321")
    assert other.verify(other.hash("4321"), "4321")
    assert not hasher.verify(other.hash("4321"), "4321")


def test_pin_hash_is_not_argon2_of_the_bare_pin(hasher: PinHasher) -> None:
    plain = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    with pytest.raises(argon2.exceptions.VerificationError):
        plain.verify(hasher.hash("4321"), "4321")
    assert not hasher.verify(plain.hash("4321"), "4321")


def test_verify_of_a_malformed_hash_is_false(hasher: PinHasher) -> None:
    assert not hasher.verify("not a hash", "4321")
    assert not hasher.verify("", "4321")


@pytest.mark.parametrize("pin", ["4321", "000000", ""])
def test_dummy_verify_is_always_false(hasher: PinHasher, pin: str) -> None:
    assert hasher.dummy_verify(pin) is False


@pytest.mark.parametrize("pin", ["0000", "4321", "123456", "123456789012"])
def test_pin_acceptable_for_4_to_12_digits(pin: str) -> None:
    assert pin_acceptable(pin)


@pytest.mark.parametrize(
    "pin", ["", "123", "1234567890123", "12a4", "12 34", "1234\n", "-1234", "１２３４", "١٢٣٤"]
)
def test_pin_not_acceptable_otherwise(pin: str) -> None:
    assert not pin_acceptable(pin)


@pytest.mark.parametrize("length", [4, 6, 12])
def test_generate_pin_makes_acceptable_pins_of_the_length(length: int) -> None:
    pin = generate_pin(length)

    assert len(pin) == length
    assert pin_acceptable(pin)


# --- Request signing ---------------------------------------------------------------------

MAC_KEY = bytes(range(32))
METHOD, PATH, TIMESTAMP = "POST", "/v1/transactions", "1795000000"
BODY = b'{"type":"purchase","stan":"000123","amount":1250}'


def test_signature_is_hmac_sha256_of_the_design_canonical_string() -> None:
    canonical = f"POST\n/v1/transactions\n1795000000\n{hashlib.sha256(BODY).hexdigest()}"
    expected = hmac.new(MAC_KEY, canonical.encode(), hashlib.sha256).hexdigest()

    signature = signing.sign(MAC_KEY, METHOD, PATH, TIMESTAMP, BODY)

    assert signature == expected
    assert len(signature) == 64 and signature == signature.lower()


def test_signature_valid_accepts_its_own_signature() -> None:
    signature = signing.sign(MAC_KEY, METHOD, PATH, TIMESTAMP, BODY)

    assert signing.signature_valid(MAC_KEY, METHOD, PATH, TIMESTAMP, BODY, signature)


def test_method_is_signed_case_insensitively() -> None:
    assert signing.sign(MAC_KEY, "post", PATH, TIMESTAMP, BODY) == signing.sign(
        MAC_KEY, "POST", PATH, TIMESTAMP, BODY
    )


def _flip_one_byte(body: bytes, index: int) -> bytes:
    return body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]


@pytest.mark.parametrize(
    ("method", "path", "timestamp", "body"),
    [
        pytest.param("PUT", PATH, TIMESTAMP, BODY, id="method"),
        pytest.param(METHOD, "/v1/batches/close", TIMESTAMP, BODY, id="path"),
        pytest.param(METHOD, PATH + "/", TIMESTAMP, BODY, id="path-trailing-slash"),
        pytest.param(METHOD, PATH, "1795000001", BODY, id="timestamp"),
        pytest.param(METHOD, PATH, TIMESTAMP, _flip_one_byte(BODY, 0), id="body-first-byte"),
        pytest.param(METHOD, PATH, TIMESTAMP, _flip_one_byte(BODY, 20), id="body-middle-byte"),
        pytest.param(METHOD, PATH, TIMESTAMP, _flip_one_byte(BODY, -1), id="body-last-byte"),
        pytest.param(METHOD, PATH, TIMESTAMP, BODY + b" ", id="body-extra-byte"),
        pytest.param(METHOD, PATH, TIMESTAMP, BODY[:-1], id="body-missing-byte"),
    ],
)
def test_any_change_invalidates_the_signature(
    method: str, path: str, timestamp: str, body: bytes
) -> None:
    signature = signing.sign(MAC_KEY, METHOD, PATH, TIMESTAMP, BODY)

    assert not signing.signature_valid(MAC_KEY, method, path, timestamp, body, signature)


def test_signature_under_another_key_is_invalid() -> None:
    signature = signing.sign(MAC_KEY, METHOD, PATH, TIMESTAMP, BODY)

    assert not signing.signature_valid(bytes(32), METHOD, PATH, TIMESTAMP, BODY, signature)


@pytest.mark.parametrize("bad", ["", "00", "0" * 64, "zz" * 32])
def test_garbage_signatures_are_invalid(bad: str) -> None:
    assert not signing.signature_valid(MAC_KEY, METHOD, PATH, TIMESTAMP, BODY, bad)


def test_uppercase_hex_signature_is_not_the_signature() -> None:
    # DESIGN §4: lowercase hex; compared exactly.
    signature = signing.sign(MAC_KEY, METHOD, PATH, TIMESTAMP, BODY)

    assert not signing.signature_valid(MAC_KEY, METHOD, PATH, TIMESTAMP, BODY, signature.upper())


@pytest.mark.parametrize(
    ("method", "path", "timestamp", "body"),
    [
        ("POST", "/v1/transactions", "1795000000", BODY),
        ("post", "/v1/batches/close", "1", b""),
        ("GET", "/v1/status", "0000000001", b"\x00\xff binary \n\r"),
        ("POST", "/v1/transactions", "1795000000", '{"name":"张三"}'.encode()),
    ],
)
@pytest.mark.parametrize("mac_key", [MAC_KEY, bytes(32), b"\xff" * 32])
def test_terminal_simulator_signs_exactly_like_the_gateway(
    mac_key: bytes, method: str, path: str, timestamp: str, body: bytes
) -> None:
    gateway = signing.sign(mac_key, method, path, timestamp, body)
    terminal = protocol.sign(mac_key, method, path, timestamp, body)

    assert terminal == gateway
    assert signing.signature_valid(mac_key, method, path, timestamp, body, terminal)


def test_terminal_simulator_signed_headers_verify_at_the_gateway() -> None:
    headers = protocol.signed_headers("T0000001", MAC_KEY, METHOD, PATH, BODY, now=1795000000.7)

    assert headers["X-Timestamp"] == "1795000000"
    assert headers["X-Terminal-Id"] == "T0000001"
    assert signing.signature_valid(
        MAC_KEY, METHOD, PATH, headers["X-Timestamp"], BODY, headers["X-Signature"]
    )
    assert signing.timestamp_fresh(headers["X-Timestamp"], 1795000000.7)


NOW = 1_795_000_000


@pytest.mark.parametrize(
    ("offset", "fresh"),
    [(0, True), (-300, True), (300, True), (-301, False), (301, False), (-10_000, False)],
)
def test_timestamp_window_is_300_seconds_either_way(offset: int, fresh: bool) -> None:
    assert signing.timestamp_fresh(str(NOW + offset), NOW) is fresh


def test_timestamp_window_with_fractional_server_clock() -> None:
    assert signing.timestamp_fresh(str(NOW - 300), NOW + 0.5) is False
    assert signing.timestamp_fresh(str(NOW - 300), NOW + 0.0) is True
    assert signing.timestamp_fresh(str(NOW + 300), NOW - 0.5) is False


def test_timestamp_window_can_be_set() -> None:
    assert signing.timestamp_fresh(str(NOW + 30), NOW, window_s=30)
    assert not signing.timestamp_fresh(str(NOW + 31), NOW, window_s=30)


@pytest.mark.parametrize(
    "timestamp",
    [
        "",
        "-1795000000",
        "+1795000000",
        "1795000000.0",
        "1.795e9",
        " 1795000000",
        "1795000000 ",
        "0x6afd5f00",
        "１７９５０００００００",  # full-width digits, which int() would accept
        "0001795000000",  # 13 characters
    ],
)
def test_non_digit_or_overlong_timestamps_are_refused(timestamp: str) -> None:
    assert not signing.timestamp_fresh(timestamp, NOW)


# --- Key wrapping ------------------------------------------------------------------------

MASTER = bytes(range(100, 132))
OTHER_MASTER = bytes(range(32))


@pytest.fixture(scope="module")
def wrapper() -> KeyWrapper:
    return KeyWrapper(MASTER)


def test_generated_terminal_keys_have_the_right_sizes() -> None:
    keys = TerminalKeys.generate()

    assert len(keys.mac_key) == MAC_KEY_BYTES == 32
    assert len(keys.pin_key) == PIN_KEY_BYTES == 16
    assert keys != TerminalKeys.generate()


def test_wrap_unwrap_round_trip(wrapper: KeyWrapper) -> None:
    keys = TerminalKeys.generate()

    mac_wrapped = wrapper.wrap(keys.mac_key, "T0000001", "mac")
    pin_wrapped = wrapper.wrap(keys.pin_key, "T0000001", "pin")

    assert keys.mac_key not in mac_wrapped and keys.pin_key not in pin_wrapped
    assert wrapper.unwrap(mac_wrapped, "T0000001", "mac") == keys.mac_key
    assert wrapper.unwrap(pin_wrapped, "T0000001", "pin") == keys.pin_key
    # Another wrapper with the same master key unwraps too (a restarted process).
    assert KeyWrapper(MASTER).unwrap(pin_wrapped, "T0000001", "pin") == keys.pin_key


def test_wrapping_twice_uses_fresh_nonces(wrapper: KeyWrapper) -> None:
    key = bytes(16)

    assert wrapper.wrap(key, "T0000001", "pin") != wrapper.wrap(key, "T0000001", "pin")


def test_unwrap_for_another_terminal_fails(wrapper: KeyWrapper) -> None:
    wrapped = wrapper.wrap(bytes(16), "T0000001", "pin")

    with pytest.raises(KeyUnwrapError):
        wrapper.unwrap(wrapped, "T0000002", "pin")


def test_unwrap_for_another_purpose_fails(wrapper: KeyWrapper) -> None:
    wrapped = wrapper.wrap(bytes(32), "T0000001", "mac")

    with pytest.raises(KeyUnwrapError):
        wrapper.unwrap(wrapped, "T0000001", "pin")


def test_unwrap_under_another_master_key_fails(wrapper: KeyWrapper) -> None:
    wrapped = wrapper.wrap(bytes(16), "T0000001", "pin")

    with pytest.raises(KeyUnwrapError):
        KeyWrapper(OTHER_MASTER).unwrap(wrapped, "T0000001", "pin")


@pytest.mark.parametrize("index", [0, 12, -1])
def test_unwrap_of_a_tampered_key_fails(wrapper: KeyWrapper, index: int) -> None:
    wrapped = bytearray(wrapper.wrap(bytes(16), "T0000001", "pin"))
    wrapped[index] ^= 0x80

    with pytest.raises(KeyUnwrapError):
        wrapper.unwrap(bytes(wrapped), "T0000001", "pin")


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_key_wrapper_needs_a_32_byte_master_key(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyWrapper(bytes(length))


def test_repr_of_terminal_keys_shows_no_key_bytes() -> None:
    keys = TerminalKeys(mac_key=bytes.fromhex("ab" * 32), pin_key=bytes.fromhex("cd" * 16))

    shown = [repr(keys), str(keys), f"{keys}", f"{keys!r}", repr([keys])]

    for text in shown:
        assert "abab" not in text.lower() and "cdcd" not in text.lower()
        assert "\\x" not in text
        assert "redacted" in text


def test_weak_pin_hash_parameters_need_the_bench_switch(tmp_path) -> None:
    from pos_gateway.settings import ConfigError, Settings, ensure_embedded_secrets

    env = {"POS_DATA_DIR": str(tmp_path), "POS_ARGON2_TIME_COST": "1"}
    ensure_embedded_secrets(env)

    with pytest.raises(ConfigError, match="POS_ALLOW_WEAK_PIN_HASH"):
        Settings.from_env(env)
    allowed = Settings.from_env({**env, "POS_ALLOW_WEAK_PIN_HASH": "bench"})
    stronger = Settings.from_env({**env, "POS_ARGON2_TIME_COST": "3"})

    assert allowed.argon2.time_cost == 1
    assert stronger.argon2.time_cost == 3
