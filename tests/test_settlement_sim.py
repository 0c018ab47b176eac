"""DESIGN §10 from the command line: terminal-sim's --items, trial and --itemised-share,
and `pos-gateway catalogue import` / `policy import`."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from pos_gateway import cli as gateway_cli
from terminal_sim import cli as sim_cli
from terminal_sim.items import parse_items

from .helpers import run_demo_data

pytestmark = pytest.mark.usefixtures("ledger_clean")


@pytest.fixture
async def demo_file(gateway_env: None, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "demo.json"
    return path, await run_demo_data(path)


async def _sim(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = await asyncio.to_thread(sim_cli.main, list(argv))
    return rc, capsys.readouterr().out


def test_item_lines_parse_exactly_to_fen() -> None:
    assert parse_items("A1:2:12.50, B-2:1:0.05") == [
        {"code": "A1", "quantity": 2, "unit_price": 1250},
        {"code": "B-2", "quantity": 1, "unit_price": 5},
    ]
    for bad in ("A1:0:1.00", "A1:1", ":1:1.00", "A1:x:1.00", "A1:1:1.001"):
        with pytest.raises(ValueError):
            parse_items(bad)


async def test_purchase_with_items_and_trial_show_the_split(demo_file, client, capsys, db) -> None:
    path, _ = demo_file
    url = str(client.make_url("")).rstrip("/")
    common = ["--url", url, "--demo", str(path), "--terminal", "pharm002"]
    items = "XJ01CAA001:2:25.00,XC09CAA001:1:38.00,XA11GAA001:1:18.00"
    rc, out = await _sim(capsys, "trial", *common, "--card", "card-07", "--items", items)
    assert rc == 0 and "split, covered:" in out, out
    rc, out = await _sim(capsys, "purchase", *common, "--card", "card-10", "--items", items,
                         "--json")  # fmt: skip
    answer = json.loads(out)
    assert answer["response_code"] == "00" and answer["amount"] == 10600
    assert answer["split"]["covered"] is False and answer["split"]["fund"] == 0
    rc, out = await _sim(capsys, "purchase", *common, "--card", "card-07", "--items", items,
                         "--account-max", "10.00", "--json")  # fmt: skip
    split = json.loads(out)["split"]
    assert split["covered"] is True and split["account"] == 1000
    assert split["fund"] + split["account"] + split["cash"] == 10600


async def test_load_with_itemised_share_counts_itemised_apart(
    demo_file, client, db, tmp_path: Path
) -> None:
    path, _ = demo_file
    out = tmp_path / "report.json"
    before = await db.fetchval("SELECT count(*) FROM settlement_splits")
    rc = await asyncio.to_thread(
        sim_cli.main,
        ["load", "--url", str(client.make_url("")), "--demo", str(path), "--json", str(out),
         "--quiet", "--terminals", "3", "--duration", "1.5", "--timeout", "30",
         "--mix", "purchase=100", "--itemised-share", "0.5", "--seed", "7"],
    )  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    itemised = report["by_type"]["purchase_itemised"].get("00", 0)
    assert itemised > 0 and report["by_type"]["purchase"].get("00", 0) > 0
    assert await db.fetchval("SELECT count(*) FROM settlement_splits") - before == itemised
    assert report["approved_per_s_by_type"]["purchase_itemised"] > 0


async def test_catalogue_and_policy_import_cli(gateway_env, tmp_path: Path, capsys, db) -> None:
    tag = secrets.token_hex(3).upper()
    audited_before = await db.fetchval("SELECT coalesce(max(audit_id), 0) FROM audit_log")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "code,name,category,self_pay_bp\n"
        f"K1-{tag},Fine,A,\n"
        f"K2-{tag},Wrong category,Z,0\n"
        f"K1-{tag},Duplicate,A,0\n"
    )
    rc = await asyncio.to_thread(gateway_cli.main, ["catalogue", "import", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1 and "line 3: category" in err and "line 4: same code as line 2" in err
    assert "line 2:" not in err
    assert await db.fetchval("SELECT count(*) FROM catalogue_items WHERE code LIKE $1",
                             f"%-{tag}") == 0  # fmt: skip
    good = tmp_path / "good.csv"
    good.write_text(f"code,name,category,self_pay_bp\nK1-{tag},Fine,A,\nK3-{tag},B item,B,1200\n")
    rc = await asyncio.to_thread(gateway_cli.main, ["catalogue", "import", str(good)])
    assert rc == 0 and "loaded 2" in capsys.readouterr().out
    assert await db.fetchval("SELECT self_pay_bp FROM catalogue_items WHERE code = $1",
                             f"K3-{tag}") == 1200  # fmt: skip
    policy = tmp_path / "policy.csv"
    policy.write_text(
        "merchant_kind,year,deductible,fund_ratio_bp,annual_cap,daily_amount_limit,"
        "daily_count_limit\npharmacy,2999,100,5000,9000,,\nclinic,2999,0,0,0,,\n"
    )
    rc = await asyncio.to_thread(gateway_cli.main, ["policy", "import", str(policy)])
    assert rc == 1 and "line 3" in capsys.readouterr().err
    assert await db.fetchval("SELECT count(*) FROM settlement_policies WHERE year = 2999") == 0
    audited = await db.fetch(
        "SELECT actor_kind, actor_id, action, subject_kind, details::text FROM audit_log "
        "WHERE audit_id > $1 AND actor_id LIKE 'pos-gateway % import' ORDER BY audit_id",
        audited_before,
    )
    assert [tuple(r) for r in audited] == [
        ("system", "pos-gateway catalogue import", "catalogue.load_refused", "catalogue",
         '{"rows": 3, "refused_rows": 2}'),
        ("system", "pos-gateway catalogue import", "catalogue.loaded", "catalogue",
         '{"rows": 2}'),
        ("system", "pos-gateway policy import", "policy.load_refused", "policy",
         '{"rows": 2, "refused_rows": 1}'),
    ]  # fmt: skip
