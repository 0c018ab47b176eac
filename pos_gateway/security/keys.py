"""Terminal keys: generated here, stored only wrapped under the master key."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAC_KEY_BYTES = 32
PIN_KEY_BYTES = 16  # AES-128, as ISO 9564 format 4 uses
_NONCE_BYTES = 12


class KeyUnwrapError(Exception):
    """A wrapped key failed authentication: wrong master key or tampered row."""


@dataclass(frozen=True, slots=True)
class TerminalKeys:
    mac_key: bytes
    pin_key: bytes

    @classmethod
    def generate(cls) -> TerminalKeys:
        return cls(mac_key=os.urandom(MAC_KEY_BYTES), pin_key=os.urandom(PIN_KEY_BYTES))

    def __repr__(self) -> str:  # keys must never reach a log through repr()
        return "TerminalKeys(<redacted>)"


class KeyWrapper:
    """AES-256-GCM with the terminal id and key purpose as associated data, so a wrapped
    key copied onto another terminal's row, or swapped between purposes, fails to unwrap."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._aead = AESGCM(master_key)

    def wrap(self, key: bytes, terminal_id: str, purpose: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, f"{terminal_id}:{purpose}".encode())

    def unwrap(self, wrapped: bytes, terminal_id: str, purpose: str) -> bytes:
        """The clear key. Cached by the wrapped bytes themselves: a re-keyed terminal's
        row carries new wrapped bytes, so a cached key can never outlive its row."""
        return self._unwrap_cached(bytes(wrapped), terminal_id, purpose)

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - one wrapper per process, lives as long
    def _unwrap_cached(self, wrapped: bytes, terminal_id: str, purpose: str) -> bytes:
        nonce, sealed = wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, sealed, f"{terminal_id}:{purpose}".encode())
        except InvalidTag as exc:
            raise KeyUnwrapError(terminal_id) from exc
