"""Encoding (pyiso8583's default spec, field 52 of 16 bytes and 64/128 of 8), the AES-CMAC
MAC and the 2-byte length framing of DESIGN §9."""

from __future__ import annotations

import copy
import hmac
from typing import Any

import iso8583
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from iso8583.specs import default as _default_spec

MAX_MESSAGE_BYTES = 2048
MAC_BYTES = 8
LENGTH_BYTES = 2


def _spec() -> dict[str, dict[str, Any]]:
    spec = copy.deepcopy(_default_spec)
    spec["52"] = {**spec["52"], "max_len": 16, "desc": "PIN block, ISO 9564 format 4 (AES)"}
    spec["64"] = {**spec["64"], "max_len": MAC_BYTES}
    spec["128"] = {**spec["128"], "max_len": MAC_BYTES}
    return spec


SPEC = _spec()


class DecodeError(ValueError):
    """The bytes are not an ISO 8583 message of our spec: the connection is closed."""


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B; ISO 9797-1 algorithm 5), the whole 16-byte tag."""
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def message_mac(mac_key: bytes, covered: bytes) -> bytes:
    """The MAC field's 8 bytes over the message from the MTI up to the MAC itself."""
    return aes_cmac(mac_key, covered)[:MAC_BYTES]


def mac_field(fields: dict[str, str]) -> str:
    """128 when the message has a secondary bitmap (any field above 64), else 64."""
    return "128" if any(k.isdigit() and 64 < int(k) < 128 for k in fields) else "64"


def encode(fields: dict[str, str], mac_key: bytes | None) -> bytes:
    """Encode `fields` ({"t": MTI, "2": ..., binary fields as hex}); with a key, MACed.

    The MAC goes in the last field of the message (64 or 128), so it is the last 8 bytes
    and covers everything before it, bitmaps with its own bit set included."""
    doc = {k: v for k, v in fields.items() if k not in ("p", "1", "64", "128")}
    if mac_key is not None:
        doc[mac_field(doc)] = "00" * MAC_BYTES
    raw, _ = iso8583.encode(doc, SPEC)
    if mac_key is not None:
        raw[-MAC_BYTES:] = message_mac(mac_key, bytes(raw[:-MAC_BYTES]))
    return bytes(raw)


def decode(raw: bytes) -> dict[str, str]:
    """Decode one message (no length prefix); binary fields come back as upper-case hex."""
    try:
        fields, _ = iso8583.decode(raw, SPEC)
    except (iso8583.DecodeError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise DecodeError(str(exc)) from None
    mti = fields.get("t", "")
    if not (len(mti) == 4 and mti.isascii() and mti.isdigit()):
        raise DecodeError(f"MTI must be 4 digits: {mti!r}")
    return fields


def mac_is_valid(raw: bytes, fields: dict[str, str], mac_key: bytes) -> bool:
    """Whether the request carries its MAC in the right field and it is good under
    `mac_key`. Field 64 or 128 is the highest field present, so its bytes end the message."""
    name = "128" if "1" in fields and int(fields["1"], 16) else "64"
    if name not in fields:
        return False
    expected = message_mac(mac_key, raw[:-MAC_BYTES])
    return hmac.compare_digest(expected, raw[-MAC_BYTES:])


def frame(message: bytes) -> bytes:
    """The 2-byte big-endian length, then the message."""
    if len(message) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(message)} bytes is over {MAX_MESSAGE_BYTES}")
    return len(message).to_bytes(LENGTH_BYTES, "big") + message
