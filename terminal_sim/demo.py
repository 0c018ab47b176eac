"""Reading the demo JSON written by `pos-gateway demo-data`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class DemoLookupError(KeyError):
    pass


class DemoWorld:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def load(cls, path: Path) -> DemoWorld:
        return cls(json.loads(Path(path).read_text()))

    def terminal(self, name: str) -> dict[str, Any]:
        """By terminal id or alias (case-insensitive)."""
        for entry in self.data["terminals"]:
            if name.lower() in (entry["terminal_id"].lower(), str(entry.get("alias", "")).lower()):
                return entry
        raise DemoLookupError(f"no terminal {name!r} in the demo file")

    def card(self, name: str) -> dict[str, Any]:
        """By alias or PAN."""
        for entry in self.data["cards"]:
            if name in (entry["pan"], entry.get("alias")):
                return entry
        raise DemoLookupError(f"no card {name!r} in the demo file")
