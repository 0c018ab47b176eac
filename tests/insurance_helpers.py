"""Builders for the insurance-side and cardholder tests."""

from __future__ import annotations

import itertools
import secrets
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from pos_gateway.domain.months import add_months

from .conftest import World

NEW_PASSWORD = "Green-tea-2046"
# Months far in the past, one per test that runs an allocation: the run credits every
# contribution of its month in the shared test database, so each test owns its month.
_past_months = itertools.count(secrets.randbelow(200))


def business_today() -> date:
    """The gateway judges months in the scheme's time zone."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


def this_month(delta: int = 0) -> date:
    return add_months(business_today().replace(day=1), delta)


def ym(month: date) -> str:
    return f"{month:%Y-%m}"


def own_past_month() -> date:
    return add_months(date(1950, 1, 1), next(_past_months) * 3)


async def get(world: World, path: str, status: int = 200, **params: str) -> Any:
    resp = await world.client.get(path, params=params, headers=world.headers)
    body = await resp.json() if resp.content_type == "application/json" else await resp.text()
    assert resp.status == status, body
    return body


async def contribute(
    world: World, ssn: str, month: date, employer: int = 60_000, individual: int = 20_000,
    status: int = 201,
) -> Any:  # fmt: skip
    return await world.admin(
        f"/v1/admin/people/{ssn}/contributions",
        {"month": ym(month), "employer_part": employer, "individual_part": individual},
        status=status,
    )


async def login(client: TestClient, ssn: str, password: str, status: int = 200) -> dict[str, Any]:
    resp = await client.post("/v1/me/login", json={"ssn": ssn, "password": password})
    body = await resp.json()
    assert resp.status == status, body
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(
    client: TestClient,
    token: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    status: int = 200,
    **params: str,
) -> Any:
    resp = await client.request(
        method,
        path,
        json=body if method == "POST" else None,
        params=params,
        headers=bearer(token),
    )
    data = await resp.json() if resp.content_type == "application/json" else await resp.text()
    assert resp.status == status, data
    return data


async def cardholder(world: World, balance: int = 10_000) -> tuple[dict[str, Any], str]:
    """A card and a logged-in session whose first password was already changed."""
    card = await world.card(balance=balance)
    first = await login(world.client, card["ssn"], card["password"])
    assert first["must_change_password"] is True
    await me(
        world.client,
        first["token"],
        "POST",
        "/v1/me/password",
        {"old_password": card["password"], "new_password": NEW_PASSWORD},
    )
    return card, first["token"]
