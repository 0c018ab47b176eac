"""Terminal side of DESIGN §4: signing, format-4 PIN blocks, amounts, STANs."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from psec.pinblock import encipher_pinblock_iso_4

CHINA_TZ = timezone(timedelta(hours=8))


def sign(mac_key: bytes, method: str, path: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over METHOD, PATH, timestamp and hex SHA-256 of the body."""
    canonical = f"{method.upper()}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
    return hmac.new(mac_key, canonical.encode(), "sha256").hexdigest()


def signed_headers(
    terminal_id: str, mac_key: bytes, method: str, path: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {
        "Content-Type": "application/json",
        "X-Terminal-Id": terminal_id,
        "X-Timestamp": timestamp,
        "X-Signature": sign(mac_key, method, path, timestamp, body),
    }


def pin_block(pin_key: bytes, pin: str, pan: str) -> str:
    """ISO 9564-1 format 4 (AES), bound to the PAN, as lowercase hex."""
    return encipher_pinblock_iso_4(pin_key, pin, pan).hex()


def parse_amount(text: str) -> int:
    """'12.50' -> 1250 fen, exactly (Decimal, never float); at most two decimals."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"amount must be a non-negative number: {text!r}")
    fen = value * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"amount has more than two decimals: {text!r}")
    return int(fen)


def format_amount(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def mask_pan(pan: str) -> str:
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:] if len(pan) > 10 else pan


def random_stan() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


class StanCounter:
    """A terminal's system trace audit number: 000001..999999, then wraps."""

    def __init__(self, start: int | None = None) -> None:
        self._next = start if start is not None else secrets.randbelow(900_000) + 1

    def next(self) -> str:
        stan = self._next
        self._next = stan % 999_999 + 1
        return f"{stan:06d}"


def local_time() -> str:
    return datetime.now(CHINA_TZ).replace(microsecond=0).isoformat()


def encode_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
