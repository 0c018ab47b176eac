"""Itemised purchases (DESIGN §10) on the terminal side: item lines typed as
CODE:QTY:PRICE (price in CNY), and the split in the answer shown to a person."""

from __future__ import annotations

from typing import Any

from terminal_sim.protocol import format_amount, parse_amount


def parse_items(text: str) -> list[dict[str, Any]]:
    """'XJ01CAA001:2:12.50,XA11GAA001:1:8.00' -> the protocol's `items` (prices in fen)."""
    lines = []
    for part in text.split(","):
        pieces = part.strip().split(":")
        if len(pieces) != 3 or not pieces[0]:
            raise ValueError(f"an item line is CODE:QTY:PRICE, e.g. XJ01CAA001:2:12.50: {part!r}")
        code, quantity, price = pieces
        if not (quantity.isascii() and quantity.isdigit()) or int(quantity) < 1:
            raise ValueError(f"quantity must be a whole number >= 1: {part!r}")
        lines.append({"code": code, "quantity": int(quantity), "unit_price": parse_amount(price)})
    if not 1 <= len(lines) <= 100:
        raise ValueError("1 to 100 item lines")
    return lines


def items_total(items: list[dict[str, Any]]) -> int:
    return sum(line["quantity"] * line["unit_price"] for line in items)


def render_split(split: dict[str, Any]) -> str:
    covered = "covered" if split.get("covered") else "NOT covered, the fund pays nothing"
    parts = [
        f"total {format_amount(split['total'])}",
        f"eligible {format_amount(split['eligible'])}",
        f"deductible {format_amount(split['deductible_applied'])}",
        f"fund {format_amount(split['fund'])}",
        f"account {format_amount(split['account'])}",
        f"cash {format_amount(split['cash'])}",
    ]
    return f"   split, {covered}: " + ", ".join(parts) + " CNY"


def batch_amount(answer: dict[str, Any]) -> int:
    """What an approved purchase adds to the terminal's batch totals: an itemised one
    counts with its individual-account part (§10), a plain one with its amount."""
    split = answer.get("split")
    return split["account"] if split else answer.get("amount", 0)
