"""Money is an integer number of fen (1 CNY = 100 fen); floats never touch it."""

from __future__ import annotations

from typing import TypeGuard

CURRENCY = "CNY"
MAX_FEN = 10**13  # far above any real amount; keeps values inside bigint with room for sums


def is_fen_amount(value: object) -> TypeGuard[int]:
    """True for a non-negative int (bool excluded: JSON `true` must not pass as 1 fen)."""
    return type(value) is int and 0 <= value <= MAX_FEN


def format_fen(amount: int) -> str:
    """1250 -> '12.50'."""
    sign = "-" if amount < 0 else ""
    whole, fen = divmod(abs(amount), 100)
    return f"{sign}{whole}.{fen:02d}"
