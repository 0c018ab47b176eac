"""Typed terminal messages (http/messages.py): each type takes exactly its fields, and the
stored request hash is the one the hand-written parser computed, so replay vs. 94 of a
request recorded before the change is decided as before."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest

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


def _old_hash(data: dict[str, Any]) -> bytes:
    identity = {k: v for k, v in data.items() if k != "pin_block"}
    return hashlib.sha256(
        json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    ).digest()


@pytest.mark.parametrize("body", BODIES, ids=[b["type"] for b in BODIES])
def test_content_hash_is_the_one_stored_before(body: dict[str, Any]) -> None:
    data = {**BASE, **body}
    parsed = parse_transaction(json.dumps(data).encode())
    assert parsed.txn_type == body["type"]
    assert parsed.content_hash == _old_hash(data)
    # Field order on the wire does not change the request's identity.
    reordered = dict(reversed(list(data.items())))
    assert parse_transaction(json.dumps(reordered).encode()).content_hash == _old_hash(data)


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
