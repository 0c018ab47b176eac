"""Small builders shared by tests."""

from __future__ import annotations

import itertools
import secrets
from datetime import date

from pos_gateway.domain.citizen_id import make_citizen_id

_sequence = itertools.count(secrets.randbelow(500))


def new_ssn() -> str:
    """A valid citizen ID number not used before in this test session (random region)."""
    n = next(_sequence)
    region = f"{secrets.randbelow(900000) + 100000}"
    return make_citizen_id(region, date(1970 + n % 40, 1 + n % 12, 1 + n % 28), n % 1000)
