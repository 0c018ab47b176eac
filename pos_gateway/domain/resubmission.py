"""A record posted again: the same content is an idempotent repeat; other content is a
conflict that names what differs (never kept silently, never overwritten silently)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def differences(recorded: Mapping[str, Any], sent: Mapping[str, Any]) -> str | None:
    """'field: recorded X, sent Y; ...' for every field of `sent` that differs, or None."""
    changed = [
        f"{name}: recorded {recorded[name]!r}, sent {value!r}"
        for name, value in sent.items()
        if recorded[name] != value
    ]
    return "; ".join(changed) or None
