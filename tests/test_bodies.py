"""Operator bodies are msgspec structs read by parse_body: what a type cannot say (trimmed
text, the years a date may have) still holds, and the old error codes are kept."""

from __future__ import annotations

import pytest

from .conftest import World
from .helpers import new_ssn
from .insurance_helpers import bearer, cardholder, me


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


async def test_every_operator_and_cardholder_body_refuses_its_shape_the_same_way(
    world: World,
) -> None:
    """An unknown or missing field is malformed_request in every body of /v1/admin and
    /v1/me, the cardholder's login, password and PIN bodies included (http/errors.py); the
    terminal keeps its own codes (test_messages)."""
    card, token = await cardholder(world)
    auth = bearer(token)
    card_id = (await me(world.client, token, "GET", "/v1/me"))["cards"][0]["card_id"]
    sent = [
        ("/v1/me/login", {"ssn": card["ssn"], "password": "x", "remember_me": True}, {}),
        ("/v1/me/login", {"ssn": card["ssn"]}, {}),
        ("/v1/me/password", {"old_password": "x", "new_password": "y", "hint": "z"}, auth),
        (f"/v1/me/cards/{card_id}/pin", {"old_pin": "1234"}, auth),
        ("/v1/me/suspension", {"from_month": "2026-01", "why": "x"}, auth),
        ("/v1/admin/people", {"ssn": new_ssn(), "name": "Li Lei", "nickname": "x"}, world.headers),
        ("/v1/admin/people", {"name": "Li Lei"}, world.headers),
    ]
    codes = []
    for path, body, headers in sent:
        resp = await world.client.post(path, json=body, headers=headers)
        assert resp.status == 400, path
        codes.append((await resp.json())["error"]["code"])
    assert codes == ["malformed_request"] * len(sent)
