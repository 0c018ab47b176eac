"""The office page of the catalogue and the policies (DESIGN §10, §11): an officer loads
CSVs through the existing all-or-nothing loaders, audited under the session's operator."""

from __future__ import annotations

import secrets

from aiohttp import FormData

from .conftest import World
from .page_helpers import Browser, office_login


def _prefix() -> str:
    return f"T{secrets.token_hex(3).upper()}"


async def _post_file(browser: Browser, path: str, name: str, content: bytes) -> tuple[int, str]:
    form = FormData()
    form.add_field("csrf", browser.csrf)
    form.add_field("file", content, filename=name, content_type="text/csv")
    status, text, _ = await browser.request("POST", path, form)  # type: ignore[arg-type]
    return status, text


async def test_an_officer_loads_a_catalogue_csv_and_sees_the_items(world: World, db) -> None:
    officer = await office_login(world.client, ["officer"])
    status, text, _ = await officer.get("/office/catalogue")
    assert status == 200 and 'href="/office/catalogue"' in text  # in the officer's menu
    p = _prefix()
    csv = f"code,name,category,self_pay_bp\n{p}-1,Aspirin <b>,A,\n{p}-2,Ginseng,B,1250\n"
    status, text = await _post_file(officer, "/office/catalogue", "items.csv", csv.encode())
    assert status == 200, text
    assert "2 row(s) loaded." in text
    assert f"{p}-2" in text and "12.5%" in text and "Aspirin &lt;b&gt;" in text
    audited = await db.fetch(
        "SELECT actor_kind, subject_kind, subject_id, details::text FROM audit_log "
        "WHERE action = 'catalogue.loaded' AND actor_id = $1",
        officer.username,  # type: ignore[attr-defined]
    )
    assert [tuple(r) for r in audited] == [
        ("operator", "catalogue", "catalogue_items", '{"rows": 2}')
    ]

    # Another officer's page lists them, in Chinese by default.
    chinese = await office_login(world.client, ["officer"], language="zh-CN")
    status, text, _ = await chinese.get("/office/catalogue")
    assert status == 200 and f"{p}-1" in text and "自付比例" in text


async def test_an_officer_loads_policies_from_the_text_area(world: World, db) -> None:
    officer = await office_login(world.client, ["officer"])
    await officer.get("/office/catalogue")
    year = 2100 + secrets.randbelow(800)
    csv = (
        "merchant_kind,year,deductible,fund_ratio_bp,annual_cap,daily_amount_limit,"
        f"daily_count_limit\npharmacy,{year},123450,7500,5000000,,3\n"
    )
    status, text, _ = await officer.post("/office/policies", {"csv": csv})
    assert status == 200 and "1 row(s) loaded." in text
    assert "¥1,234.50" in text and "75%" in text and "¥50,000.00" in text
    assert (
        await db.fetchval(
            "SELECT deductible FROM settlement_policies WHERE merchant_kind = 'pharmacy' "
            "AND year = $1",
            year,
        )
        == 123450
    )


async def test_a_bad_csv_shows_its_line_numbers_and_loads_nothing(world: World, db) -> None:
    p = _prefix()
    csv = f"code,name,category,self_pay_bp\n{p}-1,Good,A,0\n{p}-2,Bad,Z,0\n{p}-3,Bad,A,500\n"
    said = {"en": "the rows on lines 3, 4 are wrong", "zh-CN": "第 3, 4 行有误"}
    for language in said:
        officer = await office_login(world.client, ["officer"], language=language)
        await officer.get("/office/catalogue")
        status, text, _ = await officer.post("/office/catalogue", {"csv": csv})
        assert status == 400 and said[language] in text
        # The service's reasons, in its own English, on the English page.
        assert ("line 3: category must be A, B or C" in text) == (language == "en")
        refusals = await db.fetch(
            "SELECT action, details::text FROM audit_log WHERE actor_id = $1 "
            "AND subject_kind = 'catalogue'",
            officer.username,  # type: ignore[attr-defined]
        )
        assert [tuple(r) for r in refusals] == [
            ("catalogue.load_refused", '{"rows": 3, "refused_rows": 2}')
        ]
    assert (
        await db.fetchval("SELECT count(*) FROM catalogue_items WHERE code LIKE $1", f"{p}-%") == 0
    )


async def test_a_counter_clerk_is_refused_the_page_and_the_post(world: World, db) -> None:
    clerk = await office_login(world.client, ["counter"])
    status, text, _ = await clerk.get("/office/catalogue")
    assert status == 403 and "does not have the role" in text
    await clerk.get("/office/")
    assert 'href="/office/catalogue"' not in (await clerk.get("/office/"))[1]
    p = _prefix()
    status, _ = await _post_file(
        clerk, "/office/catalogue", "items.csv", f"code,name,category\n{p},X,A\n".encode()
    )
    assert status == 403
    assert await db.fetchval("SELECT count(*) FROM catalogue_items WHERE code = $1", p) == 0


async def test_a_post_without_the_csrf_token_loads_nothing(world: World, db) -> None:
    officer = await office_login(world.client, ["officer"])
    await officer.get("/office/catalogue")
    p = _prefix()
    csv = f"code,name,category\n{p},X,A\n"
    missing, _, _ = await officer.post("/office/catalogue", {"csv": csv}, csrf=False)
    forged, text, _ = await officer.post(
        "/office/catalogue", {"csv": csv, "csrf": "0" * 64}, csrf=False
    )
    assert missing == forged == 403 and "The form has expired" in text
    assert await db.fetchval("SELECT count(*) FROM catalogue_items WHERE code = $1", p) == 0


async def test_a_file_not_in_utf8_is_refused_in_words(world: World, db) -> None:
    officer = await office_login(world.client, ["officer"])
    await officer.get("/office/catalogue")
    p = _prefix()
    latin1 = f"code,name,category\n{p},Café,A\n".encode("latin-1")
    status, text = await _post_file(officer, "/office/catalogue", "items.csv", latin1)
    assert status == 400 and "CSV file in UTF-8" in text
    assert await db.fetchval("SELECT count(*) FROM catalogue_items WHERE code = $1", p) == 0
