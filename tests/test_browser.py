"""The main flow of each role and of a cardholder, in a real Chromium driven by
Playwright (Debian's chromium through executable_path).

Without a Chromium these tests are skipped with a clear reason, unless
POS_REQUIRE_BROWSER=1 (as in CI), where a missing browser fails them instead."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .browser import LAUNCH_ARGS, find_chromium
from .conftest import World
from .helpers import new_ssn
from .page_helpers import PASSWORD, operator

CHROMIUM = find_chromium()
if CHROMIUM is None and os.environ.get("POS_REQUIRE_BROWSER") == "1":
    pytest.fail(
        "POS_REQUIRE_BROWSER=1 but no Chromium was found (apt-get install chromium)",
        pytrace=False,
    )
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="BROWSER TESTS SKIPPED: no Chromium found (apt-get install chromium, or "
        "POS_CHROMIUM=/path/to/chrome)",
    ),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _page(browser: Any, language: str = "en-US"):
    context = await browser.new_context(locale=language, java_script_enabled=False)
    return await context.new_page()


async def test_cardholder_main_flow(browser: Any, world: World) -> None:
    card = await world.card(balance=123_450, pin="4321")
    terminal = await world.terminal()
    await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=2_050)
    page = await _page(browser)
    url = world.base_url

    await page.goto(url + "/")
    await page.get_by_label("ID number").fill(card["ssn"])
    await page.get_by_label("Password", exact=True).fill(card["password"])
    await page.get_by_role("button", name="Log in", exact=True).click()
    # A first password: the password change comes before anything else.
    assert page.url.endswith("/password")
    await page.get_by_label("Current password").fill(card["password"])
    await page.get_by_label("New password", exact=True).fill("Bamboo-grove-88")
    await page.get_by_label("New password again").fill("Bamboo-grove-88")
    await page.get_by_role("button", name="Change password", exact=True).click()
    assert "Your password has been changed." in await page.content()

    await page.get_by_role("link", name="Balance", exact=True).click()
    assert await page.locator(".balance").inner_text() == "¥1,214.00"

    await page.get_by_role("link", name="Statement", exact=True).click()
    statement = await page.content()
    assert "-¥20.50" in statement and "Opening balance" in statement
    assert "Closing balance" in statement and "¥1,214.00" in statement
    # Printed: the heading and the lines, without the menus and forms.
    await page.emulate_media(media="print")
    assert not await page.locator("nav").is_visible()
    assert not await page.locator("form.period").is_visible()
    assert await page.locator("dl.heading").is_visible()
    await page.emulate_media(media="screen")

    await page.get_by_role("link", name="Change PIN", exact=True).click()
    await page.get_by_label("Old PIN").fill("4321")
    await page.get_by_label("New PIN", exact=True).fill("802417")
    await page.get_by_label("New PIN again").fill("802417")
    await page.get_by_role("button", name="Change PIN", exact=True).click()
    assert "Your PIN has been changed." in await page.content()
    _, with_new = await terminal.transact("purchase", pan=card["pan"], pin="802417", amount=100)
    assert with_new.response_code == "00"

    await page.get_by_role("link", name="Coverage and contributions", exact=True).click()
    await page.get_by_label("From month (YYYY-MM)").fill("2099-01")
    await page.get_by_role("button", name="Declare suspension", exact=True).click()
    assert "Suspended from 2099-01" in await page.content()
    assert await page.get_by_role("button", name="Declare suspension", exact=True).count() == 0

    await page.get_by_role("link", name="Report card lost", exact=True).click()
    await page.get_by_role("button", name="Report lost", exact=True).click()
    assert "reported lost" in await page.content()
    _, refused = await terminal.transact("purchase", pan=card["pan"], pin="802417", amount=100)
    assert refused.response_code == "41"

    await page.get_by_role("button", name="Log out", exact=True).click()
    assert await page.get_by_role("button", name="Log in", exact=True).count() == 1


async def _office_login(browser: Any, world: World, roles: list[str], language="en-US"):
    username = await operator(world.client, roles)
    page = await _page(browser, language)
    await page.goto(world.base_url + "/office/")
    await page.get_by_label("User name").fill(username)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Log in", exact=True).click()
    return page, username


async def test_counter_clerk_main_flow(browser: Any, world: World, db) -> None:
    ssn = new_ssn()
    await world.admin("/v1/admin/people", {"ssn": ssn, "name": "Feng Xiaoling"})
    card = await world.admin("/v1/admin/cards", {"ssn": ssn, "pin": "4321"})
    page, username = await _office_login(browser, world, ["counter"])

    await page.get_by_label("ID number or name").fill("xiaoling")
    await page.get_by_role("button", name="Search", exact=True).click()
    await page.get_by_role("link", name="Feng Xiaoling", exact=True).click()
    assert card["pan"][-4:] in await page.content()

    pin_form = page.locator("form[action$='/pin-reset']")
    await pin_form.get_by_label("ID number").fill(new_ssn())
    await pin_form.get_by_label("New PIN", exact=True).fill("739154")
    await pin_form.get_by_label("New PIN again").fill("739154")
    await pin_form.get_by_role("button", name="Reset PIN", exact=True).click()
    assert "does not match this person" in await page.content()
    await page.get_by_role("link", name="Back", exact=True).click()

    await page.goto(world.base_url + f"/office/people/{ssn}")
    pin_form = page.locator("form[action$='/pin-reset']")
    await pin_form.get_by_label("ID number").fill(ssn)
    await pin_form.get_by_label("New PIN", exact=True).fill("739154")
    await pin_form.get_by_label("New PIN again").fill("739154")
    await pin_form.get_by_role("button", name="Reset PIN", exact=True).click()
    assert "The PIN has been reset" in await page.content()

    await page.goto(world.base_url + f"/office/people/{ssn}")
    reset_form = page.locator("form[action$='/password-reset']")
    await reset_form.get_by_label("ID number").fill(ssn)
    await reset_form.get_by_role("button", name="Reset password", exact=True).click()
    shown = await page.locator(".secret").inner_text()
    assert re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", shown)

    await page.goto(world.base_url + f"/office/people/{ssn}")
    await page.locator("form[action$='/freeze']").get_by_role("button").click()
    assert "Unfreeze account" in await page.content()
    actors = await db.fetch(
        "SELECT DISTINCT actor_id FROM audit_log WHERE subject_id = ANY($1::text[]) "
        "AND action IN ('card.pin_reset', 'cardholder.password_reset')",
        [ssn, card["pan"]],
    )
    assert [r["actor_id"] for r in actors] == [username]


async def test_officer_main_flow(browser: Any, world: World) -> None:
    terminal = await world.terminal()
    page, _ = await _office_login(browser, world, ["officer"])
    ssn = new_ssn()

    await page.get_by_role("link", name="People", exact=True).click()
    register = page.locator("form[method='post'][action='/office/people']")
    await register.get_by_label("ID number").fill(ssn)
    await register.get_by_label("Name").fill("Tang Yun")
    await register.get_by_role("button", name="Register", exact=True).click()
    assert "Tang Yun" in await page.content()

    await page.locator("form[action$='/cards']").get_by_role("button").click()
    issued = await page.content()
    assert "Card number" in issued and "One-time password" in issued
    await page.get_by_role("link", name="Back", exact=True).click()

    contribution = page.locator("form[action$='/contributions']")
    await contribution.get_by_label("Month (YYYY-MM)").fill("2001-03")
    await contribution.get_by_label("Employer part (yuan)").fill("600.00")
    await contribution.get_by_label("Individual part (yuan)").fill("200")
    await contribution.get_by_role("button", name="Record", exact=True).click()
    assert "Tang Yun" in await page.content()

    await page.get_by_role("link", name="Allocation runs", exact=True).click()
    await page.get_by_label("Month (YYYY-MM)").fill("2001-03")
    await page.get_by_role("button", name="Show", exact=True).click()
    await page.get_by_role("button", name="Run the allocation for 2001-03", exact=True).click()
    assert "2001-03" in await page.content()

    await page.get_by_role("link", name="Merchants", exact=True).click()
    assert terminal.config.terminal_id in await page.content()
    await page.get_by_role("link", name="Terminals", exact=True).click()
    assert terminal.config.terminal_id in await page.content()
    await page.get_by_role("link", name="Reports", exact=True).click()
    assert "Daily settlement" in await page.content()


async def test_admin_adds_an_operator_who_must_change_the_password(
    browser: Any, world: World
) -> None:
    page, _ = await _office_login(browser, world, ["admin"])
    await page.get_by_role("link", name="Operator accounts", exact=True).click()
    username = f"clerk{new_ssn()[-5:].lower()}"
    add = page.locator("form[action='/office/operators']")
    await add.get_by_label("User name").fill(username)
    await add.get_by_label("counter").check()
    await add.get_by_role("button", name="Add", exact=True).click()
    one_time = (await page.locator(".secret").all_inner_texts())[-1]

    clerk = await _page(browser, "zh-CN")
    await clerk.goto(world.base_url + "/office/")
    await clerk.get_by_label("用户名").fill(username)
    await clerk.get_by_label("登录密码", exact=True).fill(one_time)
    await clerk.get_by_role("button", name="登录", exact=True).click()
    assert clerk.url.endswith("/office/password")
    await clerk.get_by_label("当前登录密码").fill(one_time)
    await clerk.get_by_label("新登录密码", exact=True).fill("Counter-desk-2046")
    await clerk.get_by_label("再次输入新登录密码").fill("Counter-desk-2046")
    await clerk.get_by_role("button", name="修改登录密码", exact=True).click()
    assert "查找人员" in await clerk.content()
