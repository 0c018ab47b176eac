"""Malformed and unauthenticated requests (DESIGN §4): the right 4xx status with the JSON
error object {"error": {"code": ..., "message": ...}}, never a 500, and nothing written.

Bodies are signed correctly (terminal_sim.protocol.signed_headers with the terminal's
own key) so that body validation, not the signature, is what rejects them."""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from terminal_sim.client import TRANSACTIONS_PATH, Terminal
from terminal_sim.protocol import encode_body, sign, signed_headers

from .conftest import World
from .helpers import new_ssn

MAX_BODY = 16 * 1024
WINDOW_S = 300
_ID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


# Helpers ------------------------------------------------------------------------------


@dataclass
class Fixture:
    terminal: Terminal
    card: dict[str, Any]

    @property
    def terminal_id(self) -> str:
        return self.terminal.config.terminal_id

    def purchase(self, **changes: Any) -> dict[str, Any]:
        """A valid purchase body (fresh STAN, correct PIN block), with `changes` applied."""
        body = self.terminal.transaction_body(
            "purchase", pan=self.card["pan"], pin=self.card["pin"], amount=1250
        )
        body.update(changes)
        return body

    def headers(self, body: bytes, *, path: str = TRANSACTIONS_PATH, **kw: Any) -> dict[str, str]:
        config = self.terminal.config
        return signed_headers(config.terminal_id, config.mac_key, "POST", path, body, **kw)


async def _fixture(world: World) -> Fixture:
    return Fixture(await world.terminal(), await world.card(balance=10_000))


async def _post(
    world: World,
    body: bytes | Any,
    headers: dict[str, str] | None = None,
    *,
    path: str = TRANSACTIONS_PATH,
    method: str = "POST",
) -> tuple[int, Any]:
    resp = await world.client.request(method, path, data=body, headers=headers or {})
    raw = await resp.read()
    try:
        data = json.loads(raw)
    except ValueError:
        data = raw
    return resp.status, data


async def _post_signed(fx: Fixture, world: World, body: bytes) -> tuple[int, Any]:
    return await _post(world, body, fx.headers(body))


def assert_error(status: int, data: Any, expected: int, code: str | None = None) -> dict:
    """Never a 500; the expected status; exactly the JSON error object."""
    assert status != 500, f"500 Internal Server Error: {data!r}"
    assert status == expected, f"expected {expected}, got {status}: {data!r}"
    assert isinstance(data, dict) and set(data) == {"error"}, data
    error = data["error"]
    assert isinstance(error, dict), data
    assert isinstance(error.get("code"), str) and error["code"], data
    assert isinstance(error.get("message"), str) and error["message"], data
    if code is not None:
        assert error["code"] == code, data
    return error


async def _state(db, fx: Fixture) -> tuple[int, int, int, int]:
    """What a refused request must not change: the terminal's transactions, the card's
    balance and PIN failure counter, and the account's journal."""
    count = await db.fetchval(
        "SELECT count(*) FROM transactions WHERE terminal_id = $1", fx.terminal_id
    )
    row = await db.fetchrow(
        """
        SELECT a.balance, c.pin_failures,
               (SELECT count(*) FROM journal j WHERE j.account_id = a.account_id) AS lines
        FROM cards c JOIN individual_accounts a USING (account_id)
        WHERE c.pan = $1
        """,
        fx.card["pan"],
    )
    return count, row["balance"], row["pin_failures"], row["lines"]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# 400: malformed bodies, correctly signed -----------------------------------------------

Mutator = Callable[[dict[str, Any]], bytes]


def _set(**changes: Any) -> Mutator:
    return lambda body: encode_body({**body, **changes})


def _drop(name: str) -> Mutator:
    return lambda body: encode_body({k: v for k, v in body.items() if k != name})


def _raw(data: bytes) -> Mutator:
    return lambda body: data


def _replace(old: bytes, new: bytes) -> Mutator:
    def mutate(body: dict[str, Any]) -> bytes:
        encoded = encode_body(body)
        assert old in encoded
        return encoded.replace(old, new, 1)

    return mutate


def _field(name: str, change: Callable[[Any], Any]) -> Mutator:
    return lambda body: encode_body({**body, name: change(body[name])})


MALFORMED: list[tuple[str, Mutator]] = [
    ("not_json", _raw(b"this is not json")),
    ("truncated_json", lambda body: encode_body(body)[:-1]),
    ("json_array", lambda body: _json([body])),
    ("json_string", _raw(b'"purchase"')),
    ("json_null", _raw(b"null")),
    ("empty_body", _raw(b"")),
    ("deeply_nested", _raw(b"[" * 8000 + b"]" * 8000)),
    ("invalid_utf8", _replace(b'"type":"purchase"', b'"type":"purch\xff\xfease"')),
    ("invalid_utf8_in_pan", _replace(b'"pan":"', b'"pan":"\xc3\x28')),
    ("missing_type", _drop("type")),
    ("type_unknown", _set(type="refund_all")),
    ("type_int", _set(type=1)),
    ("type_null", _set(type=None)),
    *[
        (f"missing_{name}", _drop(name))
        for name in ("stan", "local_time", "pan", "pin_block", "amount", "currency")
    ],
    ("extra_field", _set(note="hello")),
    ("extra_field_null", _set(tip=None)),
    ("extra_field_lone_surrogate_name", _set(**{"\ud800": 1})),
    ("amount_float_12_5", _set(amount=12.5)),
    ("amount_float_12_0", _set(amount=12.0)),
    ("amount_exponent", _replace(b'"amount":1250', b'"amount":1.25e3')),
    ("amount_nan", _replace(b'"amount":1250', b'"amount":NaN')),
    ("amount_infinity", _replace(b'"amount":1250', b'"amount":Infinity')),
    ("amount_string", _set(amount="1250")),
    ("amount_negative", _set(amount=-1)),
    ("amount_true", _set(amount=True)),
    ("amount_null", _set(amount=None)),
    ("amount_object", _set(amount={"fen": 1250})),
    # Past Python's 4,300-digit int limit json.loads raises a plain ValueError.
    ("amount_5000_digits", _replace(b'"amount":1250', b'"amount":' + b"9" * 5000)),
    ("stan_5_digits", _set(stan="00012")),
    ("stan_7_digits", _set(stan="0000123")),
    ("stan_int", _set(stan=123)),
    ("stan_letters", _set(stan="00012A")),
    ("stan_fullwidth_digits", _set(stan="\uff10\uff10\uff10\uff11\uff12\uff13")),
    ("stan_trailing_newline", _field("stan", lambda s: s + "\n")),
    ("pan_letters", _field("pan", lambda p: p[:-3] + "ABC")),
    ("pan_15_digits", _field("pan", lambda p: p[:15])),
    ("pan_20_digits", _field("pan", lambda p: p + "0")),
    ("pan_int", _field("pan", int)),
    ("pan_arabic_indic_digits", _set(pan="\u0666" * 19)),
    ("pan_trailing_newline", _field("pan", lambda p: p + "\n")),
    ("pin_block_30_hex", _field("pin_block", lambda b: b[:30])),
    ("pin_block_34_hex", _field("pin_block", lambda b: b + "ab")),
    ("pin_block_non_hex", _set(pin_block="g" * 32)),
    ("pin_block_int", _set(pin_block=1234)),
    ("pin_block_null", _set(pin_block=None)),
    ("pin_block_trailing_newline", _field("pin_block", lambda b: b + "\n")),
    ("currency_usd", _set(currency="USD")),
    ("currency_lowercase", _set(currency="cny")),
    ("currency_numeric", _set(currency=156)),
    ("local_time_not_iso", _set(local_time="24/11/2026 10:15")),
    ("local_time_without_offset", _set(local_time="2026-11-24T10:15:00")),
    ("local_time_int", _set(local_time=1_764_000_000)),
    ("local_time_too_long", _set(local_time="2026-11-24T10:15:00+08:00" + " " * 40)),
]


@pytest.mark.parametrize("mutate", [m for _, m in MALFORMED], ids=[n for n, _ in MALFORMED])
async def test_malformed_body_is_400_and_writes_nothing(world: World, db, mutate) -> None:
    fx = await _fixture(world)
    before = await _state(db, fx)
    body = mutate(fx.purchase())

    status, data = await _post_signed(fx, world, body)

    assert_error(status, data, 400)
    assert await _state(db, fx) == before


async def test_the_unmodified_body_is_accepted(world: World, db) -> None:
    """Control: the helpers sign correctly, so the rejections above are the body's."""
    fx = await _fixture(world)
    count, balance, failures, lines = await _state(db, fx)

    status, data = await _post_signed(fx, world, encode_body(fx.purchase()))

    assert status == 200, data
    assert data["response_code"] == "00"
    assert await _state(db, fx) == (count + 1, balance - 1250, failures, lines + 1)


# 413: oversized bodies ---------------------------------------------------------------


def _padded(fx: Fixture, size: int) -> bytes:
    """A valid purchase padded with an extra field to exactly `size` bytes."""
    body = fx.purchase(padding="")
    body["padding"] = "x" * (size - len(encode_body(body)))
    encoded = encode_body(body)
    assert len(encoded) == size
    return encoded


async def test_body_over_16_kib_is_413_and_writes_nothing(world: World, db) -> None:
    fx = await _fixture(world)
    before = await _state(db, fx)

    status, data = await _post_signed(fx, world, _padded(fx, 20 * 1024))

    assert_error(status, data, 413)
    assert await _state(db, fx) == before


async def test_body_of_16_kib_plus_one_byte_is_413(world: World, db) -> None:
    fx = await _fixture(world)
    before = await _state(db, fx)

    status, data = await _post_signed(fx, world, _padded(fx, MAX_BODY + 1))

    assert_error(status, data, 413)
    assert await _state(db, fx) == before


async def test_body_of_exactly_16_kib_is_not_too_large(world: World, db) -> None:
    """16 KiB is allowed; the padding field is then what makes the request malformed."""
    fx = await _fixture(world)
    before = await _state(db, fx)

    status, data = await _post_signed(fx, world, _padded(fx, MAX_BODY))

    assert_error(status, data, 400)
    assert await _state(db, fx) == before


async def test_chunked_body_over_16_kib_is_413(world: World, db) -> None:
    """Without a Content-Length the limit still holds while the body is read."""
    fx = await _fixture(world)
    before = await _state(db, fx)
    body = _padded(fx, 40 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    status, data = await _post(world, chunks(), fx.headers(body))

    assert_error(status, data, 413)
    assert await _state(db, fx) == before


# 401: authentication -----------------------------------------------------------------

AuthCase = Callable[[Fixture, bytes], tuple[dict[str, str], bytes]]


def _without_header(name: str) -> AuthCase:
    def case(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
        headers = fx.headers(body)
        del headers[name]
        return headers, body

    return case


def _header(name: str, value: Callable[[str], str]) -> AuthCase:
    def case(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
        headers = fx.headers(body)
        headers[name] = value(headers[name])
        return headers, body

    return case


def _signed_with(key: Callable[[Fixture], bytes]) -> AuthCase:
    def case(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
        config = fx.terminal.config
        return signed_headers(config.terminal_id, key(fx), "POST", TRANSACTIONS_PATH, body), body

    return case


def _signed_as(terminal_id: Callable[[str], str]) -> AuthCase:
    """Another X-Terminal-Id, the signature made with this terminal's real key."""

    def case(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
        config = fx.terminal.config
        tid = terminal_id(config.terminal_id)
        return signed_headers(tid, config.mac_key, "POST", TRANSACTIONS_PATH, body), body

    return case


def _tampered(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
    """Signed, then one byte of the (still valid) body changed: 1250 fen becomes 1259."""
    headers = fx.headers(body)
    assert b'"amount":1250' in body
    return headers, body.replace(b'"amount":1250', b'"amount":1259', 1)


def _other_path(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
    return fx.headers(body, path="/v1/batches/close"), body


def _other_method(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
    headers = fx.headers(body)
    config = fx.terminal.config
    headers["X-Signature"] = sign(
        config.mac_key, "PUT", TRANSACTIONS_PATH, headers["X-Timestamp"], body
    )
    return headers, body


def _at(now: Callable[[], float]) -> AuthCase:
    """Timestamp `now()` and a valid signature over it: only the window can reject."""

    def case(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
        return fx.headers(body, now=now()), body

    return case


def _timestamp(value: str) -> AuthCase:
    """A non-numeric timestamp, and a valid signature over it."""

    def case(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
        headers = fx.headers(body)
        config = fx.terminal.config
        headers["X-Timestamp"] = value
        headers["X-Signature"] = sign(config.mac_key, "POST", TRANSACTIONS_PATH, value, body)
        return headers, body

    return case


def _no_timestamp(fx: Fixture, body: bytes) -> tuple[dict[str, str], bytes]:
    headers = _timestamp("")(fx, body)[0]
    del headers["X-Timestamp"]
    return headers, body


def _unknown_id(_: str) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


UNAUTHENTICATED: list[tuple[str, AuthCase]] = [
    ("missing_terminal_id", _without_header("X-Terminal-Id")),
    ("empty_terminal_id", _signed_as(lambda tid: "")),
    ("terminal_id_7_chars", _signed_as(lambda tid: tid[:7])),
    ("terminal_id_9_chars", _signed_as(lambda tid: tid + "0")),
    ("terminal_id_lowercase", _signed_as(lambda tid: "a" + tid[1:].lower())),
    ("terminal_id_with_space", _signed_as(lambda tid: tid[:7] + " ")),
    ("unknown_terminal_id", _signed_as(_unknown_id)),
    ("missing_signature", _without_header("X-Signature")),
    ("empty_signature", _header("X-Signature", lambda s: "")),
    ("garbage_signature", _header("X-Signature", lambda s: "z" * 64)),
    ("short_signature", _header("X-Signature", lambda s: s[:63])),
    ("long_signature", _header("X-Signature", lambda s: s + "0")),
    ("signature_one_char_changed", _header("X-Signature", lambda s: s[:-1] + "0123"[s[-1] == "0"])),
    ("signature_wrong_key", _signed_with(lambda fx: secrets.token_bytes(32))),
    ("signature_non_ascii", _header("X-Signature", lambda s: "\u00e9" * 64)),
    ("signature_uppercase_hex", _header("X-Signature", lambda s: s.upper())),
    ("signature_with_pin_key", _signed_with(lambda fx: fx.terminal.config.pin_key)),
    ("signature_over_other_body", _tampered),
    ("signature_over_other_path", _other_path),
    ("signature_over_other_method", _other_method),
    ("timestamp_missing", _no_timestamp),
    ("timestamp_non_numeric", _timestamp("yesterday")),
    ("timestamp_decimal", _timestamp(f"{int(time.time())}.0")),
    ("timestamp_negative", _timestamp("-1")),
    ("timestamp_301s_past", _at(lambda: math.floor(time.time()) - WINDOW_S - 1)),
    ("timestamp_301s_future", _at(lambda: math.ceil(time.time()) + WINDOW_S + 1)),
]


@pytest.mark.parametrize(
    "case", [c for _, c in UNAUTHENTICATED], ids=[n for n, _ in UNAUTHENTICATED]
)
async def test_unauthenticated_request_is_401_and_writes_nothing(
    world: World, db, case: AuthCase
) -> None:
    fx = await _fixture(world)
    before = await _state(db, fx)
    headers, body = case(fx, encode_body(fx.purchase()))

    status, data = await _post(world, body, headers)

    assert_error(status, data, 401)
    assert await _state(db, fx) == before


@pytest.mark.parametrize("offset", [-(WINDOW_S - 10), WINDOW_S - 10], ids=["past", "future"])
async def test_timestamp_inside_the_window_is_accepted(world: World, offset: int) -> None:
    fx = await _fixture(world)
    body = encode_body(fx.purchase())

    status, data = await _post(world, body, fx.headers(body, now=time.time() + offset))

    assert status == 200, data
    assert data["response_code"] == "00"


# 403: disabled terminal --------------------------------------------------------------


async def test_disabled_terminal_is_403_until_enabled_again(world: World, db) -> None:
    fx = await _fixture(world)
    await world.admin(f"/v1/admin/terminals/{fx.terminal_id}/disable", status=200)
    before = await _state(db, fx)

    body = encode_body(fx.purchase())
    status, data = await _post_signed(fx, world, body)

    assert_error(status, data, 403)
    assert await _state(db, fx) == before

    await world.admin(f"/v1/admin/terminals/{fx.terminal_id}/enable", status=200)
    status, data = await _post_signed(fx, world, encode_body(fx.purchase()))

    assert status == 200, data
    assert isinstance(data.get("response_code"), str)
    assert data["response_code"] == "00"


async def test_disabled_terminal_with_a_bad_signature_is_401(world: World, db) -> None:
    fx = await _fixture(world)
    await world.admin(f"/v1/admin/terminals/{fx.terminal_id}/disable", status=200)
    before = await _state(db, fx)
    body = encode_body(fx.purchase())
    headers = fx.headers(body)
    headers["X-Signature"] = "0" * 64

    status, data = await _post(world, body, headers)

    assert_error(status, data, 401)
    assert await _state(db, fx) == before


# Operator API ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer ", "Bearer wrong-token", "token", "bearer {token}", "{token}"],
    ids=["absent", "empty", "bearer_empty", "wrong", "garbage", "lowercase_scheme", "no_scheme"],
)
async def test_operator_api_without_the_right_token_is_401(
    world: World, db, settings, authorization: str | None
) -> None:
    ssn = new_ssn()
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=settings.secrets.admin_token)

    status, data = await _post(
        world,
        _json({"ssn": ssn, "name": "Nobody", "opening_allocation": 100}),
        {**headers, "Content-Type": "application/json"},
        path="/v1/admin/people",
    )

    assert_error(status, data, 401)
    assert await db.fetchval("SELECT count(*) FROM people WHERE ssn = $1", ssn) == 0


async def test_operator_read_without_token_is_401(world: World) -> None:
    card = await world.card()

    resp = await world.client.get(f"/v1/admin/cards/{card['pan']}")

    assert_error(resp.status, await resp.json(content_type=None), 401)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[]", b'"x"', b"null", b'{"ssn": "\xff"}'],
    ids=["not_json", "empty", "array", "string", "null", "invalid_utf8"],
)
async def test_operator_malformed_json_is_400(world: World, body: bytes) -> None:
    status, data = await _post(
        world,
        body,
        {**world.headers, "Content-Type": "application/json"},
        path="/v1/admin/people",
    )

    assert_error(status, data, 400)


async def test_operator_invalid_ssn_is_400_invalid_ssn(world: World, db) -> None:
    ssn = new_ssn()
    wrong = next(c for c in "0123456789X" if c != ssn[-1])
    bad = ssn[:-1] + wrong

    status, data = await _post(
        world,
        _json({"ssn": bad, "name": "Bad Check Digit", "opening_allocation": 100}),
        {**world.headers, "Content-Type": "application/json"},
        path="/v1/admin/people",
    )

    assert_error(status, data, 400, code="invalid_ssn")
    assert await db.fetchval("SELECT count(*) FROM people WHERE ssn IN ($1, $2)", bad, ssn) == 0


@pytest.mark.parametrize(
    "merchant_id",
    [
        "ABC",
        "12345678901234",
        "1234567890123456",
        "abcdefghijklmno",
        "ABCDEFGHIJKLMN!",
        "ABCDEFGHIJKLMN\u00c4",
        "ABCDEFG IJKLMNO",
        12345678901234,
    ],
    ids=["short", "14_chars", "16_chars", "lowercase", "punctuation", "non_ascii", "space", "int"],
)
async def test_operator_bad_merchant_id_is_400(world: World, db, merchant_id: Any) -> None:
    status, data = await _post(
        world,
        _json(
            {
                "name": "Bad Id Pharmacy",
                "kind": "pharmacy",
                "designated_from": "2025-01-01",
                "designated_until": "2030-01-01",
                "merchant_id": merchant_id,
            }
        ),
        {**world.headers, "Content-Type": "application/json"},
        path="/v1/admin/merchants",
    )

    assert_error(status, data, 400)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM merchants WHERE merchant_id = $1", str(merchant_id).strip()
        )
        == 0
    )


@pytest.mark.parametrize(
    ("method", "path", "operator"),
    [
        ("GET", "/nothing-here", False),  # "/" itself is the cardholder pages' login
        ("GET", "/v1/nothing-here", False),
        ("POST", "/v1/transaction", False),
        ("POST", "/v1/admin/nothing-here", True),
    ],
)
async def test_unknown_path_is_404_json(
    world: World, method: str, path: str, operator: bool
) -> None:
    status, data = await _post(
        world, b"{}", world.headers if operator else {}, path=path, method=method
    )

    assert_error(status, data, 404)


async def test_disabling_an_unknown_terminal_is_404_json(world: World) -> None:
    status, data = await _post(
        world, b"{}", world.headers, path=f"/v1/admin/terminals/{_unknown_id('')}/disable"
    )

    assert_error(status, data, 404)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_wrong_method_on_transactions_is_405_json(world: World, method: str) -> None:
    status, data = await _post(world, b"", {}, method=method)

    assert_error(status, data, 405)


async def test_huge_integer_in_a_batch_close_is_400(world: World) -> None:
    fx = await _fixture(world)
    body = (
        b'{"batch_no":'
        + b"9" * 5000
        + b',"purchases":{"count":0,"amount":0},'
        + (b'"refunds":{"count":0,"amount":0}}')
    )

    status, data = await _post(
        world, body, fx.headers(body, path="/v1/batches/close"), path="/v1/batches/close"
    )

    assert_error(status, data, 400)


async def test_huge_integer_with_a_bad_signature_is_401(world: World) -> None:
    fx = await _fixture(world)
    body = encode_body(fx.purchase()).replace(b'"amount":1250', b'"amount":' + b"9" * 5000)
    headers = {**fx.headers(body), "X-Signature": "0" * 64}

    status, data = await _post(world, body, headers)

    assert_error(status, data, 401)
