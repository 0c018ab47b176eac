"""Typed terminal messages (http/messages.py): each type takes exactly its fields, and the
stored request hash is domain.identity's request identity, on business fields only, the
one the ISO 8583 transport takes too (schema/004 recomputed the stored hashes)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest

from pos_gateway.domain.identity import request_identity
from pos_gateway.errors import InvalidInput
from pos_gateway.http.bodies import BODY_ERRORS, Login
from pos_gateway.http.messages import decode
from pos_gateway.http.validation import parse_batch_close, parse_transaction

PIN_BLOCK = "0123456789abcdef" * 2
BASE = {"stan": "000123", "local_time": "2026-11-24T10:15:00+08:00"}
BODIES: list[dict[str, Any]] = [
    {"type": "purchase", "pan": "6200000000000001", "pin_block": PIN_BLOCK, "amount": 1250,
     "currency": "CNY"},
    {"type": "balance_inquiry", "pan": "6200000000000001", "pin_block": PIN_BLOCK},
    {"type": "balance_inquiry", "pan": "6200000000000001", "pin_block": PIN_BLOCK,
     "currency": "CNY"},
    {"type": "cash_withdrawal", "pan": "6200000000000001", "amount": 0, "currency": "CNY"},
    {"type": "refund", "original_rrn": "123456789012", "amount": 5, "currency": "CNY"},
    {"type": "reversal", "original_stan": "000122", "pan": "6200000000000001",
     "original_local_time": "2026-11-24T10:14:00+08:00"},
]  # fmt: skip


def _business_identity(data: dict[str, Any]) -> bytes:
    """The identity by its rule (domain/identity.py): business fields only."""
    return request_identity(
        txn_type=data["type"],
        pan=data.get("pan"),
        amount=data.get("amount"),
        original_rrn=data.get("original_rrn"),
        original_stan=data.get("original_stan"),
    )


# A business field of each type, and another value for it: a different request.
_OTHER_VALUE = {
    "purchase": ("amount", 1251),
    "balance_inquiry": ("pan", "6200000000000019"),
    "cash_withdrawal": ("amount", 1),
    "refund": ("original_rrn", "123456789013"),
    "reversal": ("original_stan", "000121"),
}


@pytest.mark.parametrize("body", BODIES, ids=[b["type"] for b in BODIES])
def test_content_hash_is_the_request_identity_of_business_fields(body: dict[str, Any]) -> None:
    data = {**BASE, **body}
    parsed = parse_transaction(json.dumps(data).encode())
    assert parsed.txn_type == body["type"]
    assert len(parsed.content_hash) == 32
    assert parsed.content_hash == _business_identity(data)
    # Field order on the wire does not change the request's identity.
    reordered = dict(reversed(list(data.items())))
    assert parse_transaction(json.dumps(reordered).encode()).content_hash == parsed.content_hash
    # Neither do the time of day, a re-enciphered PIN block or a currency left out where it
    # is optional: a retransmission (by either transport) is the same request.
    same = {**data, "local_time": "2026-11-24T23:59:59+08:00"}
    if "pin_block" in data:
        same["pin_block"] = "fedcba9876543210" * 2
    if data["type"] == "balance_inquiry":
        same.pop("currency", None)
    if "original_local_time" in data:
        same["original_local_time"] = "2026-11-23T10:14:00+08:00"
    assert parse_transaction(json.dumps(same).encode()).content_hash == parsed.content_hash
    # A business field does change it.
    name, value = _OTHER_VALUE[data["type"]]
    other = parse_transaction(json.dumps({**data, name: value}).encode())
    assert other.content_hash != parsed.content_hash


def test_identity_counts_the_items_in_order_and_account_max() -> None:
    lines = [{"code": "A1", "quantity": 2, "unit_price": 500},
             {"code": "B1", "quantity": 1, "unit_price": 250}]  # fmt: skip
    data = {**BASE, **BODIES[0], "items": lines, "account_max": 0}
    parsed = parse_transaction(json.dumps(data).encode())
    assert parsed.items == (("A1", 2, 500), ("B1", 1, 250))
    assert parsed.content_hash == request_identity(
        txn_type="purchase", pan=data["pan"], amount=1250, items=parsed.items, account_max=0
    )
    hashes = {
        parsed.content_hash,
        _business_identity(data),  # the same purchase without items
        parse_transaction(json.dumps({**data, "items": lines[::-1]}).encode()).content_hash,
        parse_transaction(json.dumps({**data, "account_max": 1}).encode()).content_hash,
    }
    assert len(hashes) == 4


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"type": "refund", "pin_block": PIN_BLOCK}, "unexpected_field"),  # not a refund's
        ({"amount": 12.0}, "invalid_amount"),
        ({"amount": True}, "invalid_amount"),
        ({"amount": "1250"}, "invalid_amount"),
        ({"amount": 10**13 + 1}, "invalid_amount"),
        ({"pan": "6200000000000001\n"}, "invalid_pan"),
        ({"stan": "00012\n"}, "invalid_stan"),
        ({"type": "sale"}, "unknown_type"),
        ({"local_time": "2026-11-24T10:15:00"}, "invalid_local_time"),
    ],
)
def test_each_type_takes_exactly_its_fields_and_types(changes: dict[str, Any], code: str) -> None:
    data = {**BASE, **BODIES[0], **changes}
    with pytest.raises(InvalidInput) as refused:
        parse_transaction(json.dumps(data).encode())
    assert refused.value.code == code


def test_a_type_without_its_required_field_is_missing_field() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_transaction(json.dumps({**BASE, "type": "reversal"}).encode())
    assert (refused.value.code, refused.value.message) == (
        "missing_field",
        "missing field(s): original_stan",
    )


def test_batch_close_digest_and_figures_are_as_before() -> None:
    figures = {"purchases": {"count": 2, "amount": 300}, "refunds": {"count": 0, "amount": 0}}
    batch_no, parsed, digest = parse_batch_close(json.dumps({"batch_no": 7, **figures}).encode())
    assert (batch_no, parsed) == (7, figures)
    assert digest == hashlib.sha256(json.dumps([7, figures], sort_keys=True).encode()).digest()
    with pytest.raises(InvalidInput) as refused:
        parse_batch_close(json.dumps({"batch_no": 7, **figures, "x": 1}).encode())
    assert refused.value.code == "unexpected_field"
    bad = {**figures, "refunds": {"count": 1, "amount": 1, "tip": 0}}
    with pytest.raises(InvalidInput) as refused:
        parse_batch_close(json.dumps({"batch_no": 7, **bad}).encode())
    assert refused.value.code == "invalid_figures"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"ssn": "x", "password": "a" * 65}, "invalid_password"),
        ({"ssn": "x", "password": "pässword"}, "invalid_password"),
        ({"ssn": 110105, "password": "secret"}, "invalid_ssn"),
        ({"ssn": "x"}, "missing_field"),
        ({"ssn": "x", "password": "secret", "remember_me": True}, "unexpected_field"),
    ],
)
def test_a_typed_body_names_the_field_at_fault(body: dict[str, Any], code: str) -> None:
    decoder = msgspec.json.Decoder(Login)
    with pytest.raises(InvalidInput) as refused:
        decode(decoder, json.dumps(body).encode(), BODY_ERRORS)
    assert refused.value.code == code
    assert decode(decoder, b'{"ssn": "x", "password": "secret"}', BODY_ERRORS) == Login(
        ssn="x", password="secret"
    )
