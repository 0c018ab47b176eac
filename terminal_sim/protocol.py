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


STAN_FIRST, STAN_LAST = 1, 999_999


class StanCounter:
    """A terminal's system trace audit number: counts up through its range, then wraps.

    The whole range is 000001..999999; a simulated terminal that shares a real terminal
    id with others gets a slice of it (see terminal_sim.load.plan_terminals), so that
    (terminal, date, STAN) never repeats between them."""

    def __init__(
        self, start: int | None = None, *, first: int = STAN_FIRST, last: int = STAN_LAST
    ) -> None:
        if not STAN_FIRST <= first <= last <= STAN_LAST:
            raise ValueError(f"STAN range {first}..{last} is not within 1..999999")
        if start is None:
            # Random, so that two runs on the same day seldom meet an earlier STAN.
            start = first + secrets.randbelow(last - first + 1)
        if not first <= start <= last:
            raise ValueError(f"STAN {start} is outside its range {first}..{last}")
        self.first, self.last = first, last
        self._next = start

    def next(self) -> str:
        stan = self._next
        self._next = stan + 1 if stan < self.last else self.first
        return f"{stan:06d}"

    def jump(self) -> None:
        """Go on from a random point of the range: after a 94, the STANs that follow the
        used one were most likely used by the same earlier run too."""
        self._next = self.first + secrets.randbelow(self.last - self.first + 1)


def parse_stan(text: str) -> str:
    """A STAN as typed: 1 to 6 digits, zero-padded to the six the protocol wants."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= len(text) <= 6:
        raise ValueError(f"a STAN is 1 to 6 digits: {text!r}")
    return f"{int(text):06d}"


def parse_figures(text: str) -> dict[str, int]:
    """'3:37.50' (count:amount in CNY) -> {"count": 3, "amount": 3750} for a batch close."""
    count, sep, amount = text.partition(":")
    count = count.strip()
    if not sep or not (count.isascii() and count.isdigit()):
        raise ValueError(f"batch figures are COUNT:AMOUNT, e.g. 3:37.50, not {text!r}")
    return {"count": int(count), "amount": parse_amount(amount)}


def local_time() -> str:
    return datetime.now(CHINA_TZ).replace(microsecond=0).isoformat()


def encode_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
