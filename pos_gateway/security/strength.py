"""Start-up checks of the deployment's secrets: a guessable operator token or a degenerate
key is refused before the gateway serves anything."""

from __future__ import annotations

import math
from collections import Counter

MIN_ADMIN_TOKEN_CHARS = 32
# Estimated from the token's own character frequencies: 16 random bytes as 32 hex
# characters score 91-120 bits, `secrets.token_urlsafe(24)` 126-150.
MIN_ADMIN_TOKEN_BITS = 80
MIN_DISTINCT_KEY_BYTES = 8  # a random 32-byte key has about 30; fewer is a pattern


def admin_token_problem(token: str) -> str | None:
    """Why the operator token is too weak to guard the operator API, or None."""
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        return f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters"
    counts = Counter(token)
    bits = -sum(n * math.log2(n / len(token)) for n in counts.values())
    periodic = any(
        token == (token[:period] * (len(token) // period + 1))[: len(token)]
        for period in range(1, len(token) // 2 + 1)
    )
    if bits < MIN_ADMIN_TOKEN_BITS or periodic:
        return "looks guessable (too few different characters, or a repeated pattern)"
    return None


def key_problem(key: bytes) -> str | None:
    """Why a 32-byte key is degenerate (all zero, one byte repeated, a short pattern)."""
    if len(set(key)) < MIN_DISTINCT_KEY_BYTES:
        return "is degenerate (all zero or a repeated pattern); generate it at random"
    return None
