"""Operator bodies are msgspec structs read by parse_body: what a type cannot say (trimmed
text, the years a date may have) still holds, and the old error codes are kept."""

from __future__ import annotations

import pytest

from .conftest import World
from .helpers import new_ssn


async def test_free_text_is_trimmed_before_it_is_stored(world: World) -> None:
    ssn = new_ssn()
    await world.admin("/v1/admin/people", {"ssn": ssn, "name": "  Li Lei  "})

    resp = await world.client.get(f"/v1/admin/people/{ssn}", headers=world.headers)

    assert (await resp.json())["name"] == "Li Lei"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": 7}, "name"),
        ({"name": "Li Lei", "opening_allocation": 1.5}, "opening_allocation"),
        ({"name": "Li Lei", "opening_allocation": True}, "opening_allocation"),
        ({"name": "Li Lei", "nickname": "x"}, "nickname"),
    ],
    ids=["blank", "too_long", "int", "float_amount", "bool_amount", "unknown_field"],
)
async def test_a_bad_person_field_is_400_malformed_request_naming_it(
    world: World, body: dict[str, object], field: str
) -> None:
    error = await world.admin("/v1/admin/people", {"ssn": new_ssn(), **body}, status=400)

    assert error["error"]["code"] == "malformed_request"
    assert field in error["error"]["message"]


@pytest.mark.parametrize("day", ["1899-12-31", "3000-01-01", "2025-02-30", "2025-1-1"])
async def test_a_date_out_of_range_or_not_a_day_is_400(world: World, day: str) -> None:
    body = {
        "name": "Range Pharmacy",
        "kind": "pharmacy",
        "designated_from": day,
        "designated_until": "2030-01-01",
    }

    error = await world.admin("/v1/admin/merchants", body, status=400)

    assert error["error"] == {
        "code": "malformed_request",
        "message": "designated_from must be a date YYYY-MM-DD between 1900 and 2999",
    }


@pytest.mark.parametrize("month", ["2025-13", "1899-12", "2025-1", 202501])
async def test_a_bad_month_is_400(world: World, month: object) -> None:
    error = await world.admin("/v1/admin/allocations", {"month": month}, status=400)

    assert error["error"]["code"] == "malformed_request"
    assert error["error"]["message"].startswith("month must be a month YYYY-MM")
