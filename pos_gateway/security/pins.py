"""PIN handling: ISO 9564 format-4 PIN blocks and peppered argon2id PIN hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import argon2
from psec.pinblock import decipher_pinblock_iso_4

PIN_BLOCK_BYTES = 16


class PinBlockError(ValueError):
    """The PIN block does not decipher to a valid format-4 PIN field."""


def decipher_pin_block(pin_key: bytes, pin_block: bytes, pan: str) -> str:
    """Recover the clear PIN from a format-4 block bound to `pan`; raise PinBlockError."""
    if len(pin_block) != PIN_BLOCK_BYTES:
        raise PinBlockError("PIN block must be 16 bytes")
    try:
        return decipher_pinblock_iso_4(pin_key, pin_block, pan)
    except ValueError as exc:
        # psec's messages may quote fields of the deciphered block: never pass them on.
        raise PinBlockError("PIN block does not decipher to a format-4 PIN field") from exc


@dataclass(frozen=True, slots=True)
class Argon2Params:
    time_cost: int = 2
    memory_cost_kib: int = 19456  # 19 MiB: the OWASP minimum for argon2id with t=2, p=1
    parallelism: int = 1


class PinHasher:
    """argon2id over HMAC-SHA256(pepper, PIN): a stolen database alone cannot be brute-forced."""

    def __init__(self, pepper: bytes, params: Argon2Params) -> None:
        self._pepper = pepper
        self._hasher = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost_kib,
            parallelism=params.parallelism,
            type=argon2.Type.ID,
        )
        # Verified against for unknown cards, so that a miss costs as much as a hit.
        self._dummy_hash = self._hasher.hash(secrets.token_bytes(32))

    def _peppered(self, pin: str) -> bytes:
        return hmac.new(self._pepper, pin.encode("ascii"), hashlib.sha256).digest()

    def hash(self, pin: str) -> str:
        return self._hasher.hash(self._peppered(pin))

    def verify(self, pin_hash: str, pin: str) -> bool:
        """Blocking (tens of ms): call it from a thread pool."""
        try:
            return self._hasher.verify(pin_hash, self._peppered(pin))
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False

    def dummy_verify(self, pin: str) -> bool:
        self.verify(self._dummy_hash, pin)
        return False


def pin_acceptable(pin: str) -> bool:
    """4 to 12 digits, the range a format-4 PIN field can carry."""
    return pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12


def generate_pin(length: int = 6) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))
