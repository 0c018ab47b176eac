"""Terminal request signing: HMAC-SHA256 over a canonical string (DESIGN §4)."""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_WINDOW_S = 300


def canonical_string(method: str, path: str, timestamp: str, body: bytes) -> bytes:
    """METHOD \\n PATH \\n X-Timestamp \\n hex(SHA-256(body))."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{timestamp}\n{digest}".encode()


def sign(mac_key: bytes, method: str, path: str, timestamp: str, body: bytes) -> str:
    return hmac.new(mac_key, canonical_string(method, path, timestamp, body), "sha256").hexdigest()


def signature_valid(
    mac_key: bytes, method: str, path: str, timestamp: str, body: bytes, signature: str
) -> bool:
    expected = sign(mac_key, method, path, timestamp, body)
    return hmac.compare_digest(expected, signature)


def timestamp_fresh(timestamp: str, now: float, window_s: int = TIMESTAMP_WINDOW_S) -> bool:
    """Unix seconds, digits only, within `window_s` of the server clock either way."""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return False
    return abs(int(timestamp) - now) <= window_s
