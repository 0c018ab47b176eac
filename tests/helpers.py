"""Small builders shared by tests."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from datetime import date
from pathlib import Path
from typing import Any

from pos_gateway import cli as gateway_cli
from pos_gateway.domain.citizen_id import make_citizen_id
from pos_gateway.logs import configure_logging

_sequence = itertools.count(secrets.randbelow(500))


def new_ssn() -> str:
    """A valid citizen ID number not used before in this test session (random region)."""
    n = next(_sequence)
    region = f"{secrets.randbelow(900000) + 100000}"
    return make_citizen_id(region, date(1970 + n % 40, 1 + n % 12, 1 + n % 28), n % 1000)


async def run_demo_data(path: Path) -> dict[str, Any]:
    """`pos-gateway demo-data --out path` in a thread (it runs its own event loop)."""
    try:
        rc = await asyncio.to_thread(gateway_cli.main, ["demo-data", "--out", str(path)])
    finally:
        configure_logging("info")  # the CLI configured logging for itself
    assert rc == 0
    return json.loads(path.read_text())
