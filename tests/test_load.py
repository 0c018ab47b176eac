"""The load generator: mix, STAN slices, HDR figures, timeouts reversed, and a short run
against the real gateway whose report matches what the gateway recorded."""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from rich.console import Console

from terminal_sim import cli as sim_cli
from terminal_sim.demo import DemoWorld
from terminal_sim.load import (
    LoadConfig,
    LoadError,
    LoadTerminal,
    StanSpaceExhausted,
    designated_terminals,
    parse_mix,
    plan_terminals,
    run_load,
)
from terminal_sim.report import (
    LoadStats,
    Progress,
    build_report,
    latency_summary,
    new_histogram,
    record_us,
    render_report,
)

# Codes the gateway answers without recording a transaction.
UNRECORDED = {"91", "94", "96"}


def _fake_world(terminals: int = 3, designated: bool = True) -> DemoWorld:
    return DemoWorld(
        {
            "merchants": [{"merchant_id": "M1", "designated": designated}],
            "terminals": [
                {
                    "terminal_id": f"TERM{n:04d}",
                    "merchant_id": "M1",
                    "mac_key": secrets.token_hex(32),
                    "pin_key": secrets.token_hex(16),
                    "designated": designated,
                }
                for n in range(terminals)
            ],
            "cards": [
                {"pan": "6217990000000000018", "pin": "123456", "status": "active"},
                {"pan": "6217990000000000026", "pin": "654321", "status": "lost"},
            ],
        }
    )


# The mix ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mix"),
    [
        ("purchase=90,balance_inquiry=10", {"purchase": 90, "balance_inquiry": 10}),
        ("purchase=1", {"purchase": 1}),
        (" purchase = 3 , balance = 1 ", {"purchase": 3, "balance_inquiry": 1}),
        ("purchase=8,cash-withdrawal=1,transfer=1,balance_inquiry=0",
         {"purchase": 8, "cash_withdrawal": 1, "transfer": 1, "balance_inquiry": 0}),
    ],
)  # fmt: skip
def test_mix_is_parsed_into_weights(text: str, mix: dict[str, int]) -> None:
    assert parse_mix(text) == mix


@pytest.mark.parametrize(
    "text",
    ["", "purchase", "purchase=", "purchase=-1", "purchase=1.5", "refund=1", "purchase=0",
     "purchase=1,purchase=2", "=5", "purchase=1,,balance=1", "purchase=１"],
)  # fmt: skip
def test_bad_mixes_are_refused(text: str) -> None:
    with pytest.raises(LoadError):
        parse_mix(text)


def test_bad_mix_on_the_command_line_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        sim_cli.main(["load", "--demo", "x.json", "--mix", "refund=5"])

    assert exit_.value.code == 2
    assert "unknown type 'refund'" in capsys.readouterr().err


# STAN slices --------------------------------------------------------------------------


@pytest.mark.parametrize(("real", "simulated"), [(1, 1), (3, 2), (3, 3), (3, 7), (2, 50)])
def test_simulated_terminals_sharing_an_id_get_disjoint_stan_slices(
    real: int, simulated: int
) -> None:
    plan = plan_terminals(_fake_world(real).data["terminals"], simulated)

    assert [p.index for p in plan] == list(range(simulated))
    by_terminal: dict[str, list[tuple[int, int]]] = {}
    for sim in plan:
        assert 1 <= sim.first_stan <= sim.last_stan <= 999_999
        by_terminal.setdefault(sim.config.terminal_id, []).append((sim.first_stan, sim.last_stan))
    assert len(by_terminal) == min(real, simulated)
    for slices in by_terminal.values():
        slices.sort()
        for (_, last), (first, _) in pairwise(slices):
            assert last < first
        # Each real terminal's range is shared out, nearly all of it used.
        assert sum(b - a + 1 for a, b in slices) > 999_999 - len(slices)


def test_no_stan_repeats_across_simulated_terminals_until_a_slice_is_used_up() -> None:
    # 10,000 simulated terminals on 2 real ones: slices of 199 STANs, small enough to use up.
    plan = plan_terminals(_fake_world(2).data["terminals"], 10_000)
    sims = [LoadTerminal(p, None, "http://127.0.0.1:9") for p in plan[:40]]  # type: ignore[arg-type]
    seen: set[tuple[str, str]] = set()
    for sim in sims:
        assert sim.plan.stan_count == 199
        # Every STAN of the slice, wrapping round inside it from a random start.
        for _ in range(sim.plan.stan_count):
            key = (sim.plan.config.terminal_id, sim.next_stan())
            assert key not in seen
            seen.add(key)
        with pytest.raises(StanSpaceExhausted):
            sim.next_stan()
    assert len(seen) == 40 * 199
    assert {stan for _, stan in seen} <= {f"{n:06d}" for n in range(1, 20 * 199 + 1)}


def test_plan_needs_terminals_and_a_sane_count() -> None:
    with pytest.raises(LoadError):
        plan_terminals([], 1)
    with pytest.raises(LoadError):
        plan_terminals(_fake_world(1).data["terminals"], 0)


def test_only_terminals_of_designated_merchants_are_used() -> None:
    world = _fake_world(2)
    world.data["terminals"].append(
        {"terminal_id": "OLD00001", "merchant_id": "M2", "mac_key": "", "pin_key": ""}
    )
    world.data["merchants"].append({"merchant_id": "M2", "designated": False})

    ids = [t["terminal_id"] for t in designated_terminals(world)]

    assert ids == ["TERM0000", "TERM0001"]


# Figures ------------------------------------------------------------------------------


def test_percentiles_from_a_histogram_of_known_values() -> None:
    histogram = new_histogram()
    for us in range(1, 1001):
        histogram.record_value(us)

    summary = latency_summary(histogram)

    assert summary["p50"] == 500
    assert summary["p90"] == 900
    assert summary["p99"] == 990
    assert summary["p99_9"] == 999
    assert summary["max"] == 1000
    assert summary["count"] == 1000
    assert summary["mean"] == pytest.approx(500.5)


def test_percentiles_keep_three_significant_figures_at_large_values() -> None:
    histogram = new_histogram()
    record_us(histogram, 0.000_000_1)  # below 1 µs: counted as 1 µs
    for _ in range(98):
        record_us(histogram, 0.002)  # 2 ms
    record_us(histogram, 1.5)  # one 1.5 s outlier

    summary = latency_summary(histogram)

    assert summary["p50"] == pytest.approx(2000, rel=1e-3)
    assert summary["p99"] == pytest.approx(2000, rel=1e-3)
    assert summary["max"] == pytest.approx(1_500_000, rel=1e-3)


def test_empty_histogram_reports_zeros() -> None:
    summary = latency_summary(new_histogram())

    assert summary["p99"] == summary["max"] == summary["count"] == 0


def test_report_counts_answers_codes_and_errors() -> None:
    stats = LoadStats()
    timing = {"intended": 0.0, "sent_at": 0.001, "done": 0.004}
    for code, amount in (("00", 100), ("00", 250), ("51", 100)):
        stats.request_sent("purchase")
        body = (
            {"response_code": code, "amount": amount} if code == "00" else {"response_code": code}
        )
        stats.answer("purchase", **timing, status=200, body=body, amount=amount)
    stats.request_sent("balance_inquiry")
    stats.answer("balance_inquiry", **timing, status=200, body={"response_code": "00"}, amount=None)
    stats.request_sent("purchase")
    stats.answer("purchase", **timing, status=401, body={"error": {}}, amount=100)
    stats.request_sent("purchase")
    stats.error("purchase", "timeout")

    report = build_report(stats, settings={"model": "closed", "terminals": 1}, elapsed_s=2.0)

    assert report["sent"] == 6 and report["answered"] == 4
    assert report["response_codes"] == {"00": 3, "51": 1}
    assert report["errors"] == {"http_401": 1, "timeout": 1} and report["errors_total"] == 2
    assert report["approved_purchases"] == {"count": 2, "amount_fen": 350}
    assert report["by_type"]["purchase"] == {
        "sent": 5, "00": 2, "51": 1, "error:http_401": 1, "error:timeout": 1,
    }  # fmt: skip
    assert report["latency_us"]["count"] == 4  # answered requests only
    assert report["latency_us"]["p50"] == pytest.approx(4000, rel=1e-3)
    assert report["service_time_us"]["p50"] == pytest.approx(3000, rel=1e-3)
    assert report["throughput_per_s"] == 2.0

    out = io.StringIO()
    Console(file=out, width=120).print(render_report(report))
    table = out.getvalue()
    assert "latency p99.9" in table and "4.00 ms" in table
    assert "2 for 3.50 CNY" in table and "timeout: 1" in table


def test_progress_is_one_updating_line() -> None:
    stats = LoadStats()
    out = io.StringIO()
    progress = Progress(stats, 3.0, Console(file=out, force_terminal=True, width=160))

    progress.start()
    stats.request_sent("purchase")
    progress.refresh()
    progress.stop()

    text = out.getvalue()
    assert "/3 s" in text and "sent 1" in text and "answered 0" in text and "p99" in text


@pytest.mark.parametrize(
    "kwargs",
    [{"duration_s": 0}, {"duration_s": 7200}, {"rate": 0}, {"timeout_s": 0}, {"amount_fen": 0}],
)
def test_load_settings_are_bounded(kwargs: dict[str, Any]) -> None:
    with pytest.raises(LoadError):
        LoadConfig(**{"url": "http://127.0.0.1:9", "terminals": 1, "duration_s": 1, **kwargs})


# Timeouts are reversed ----------------------------------------------------------------


async def test_a_purchase_that_times_out_is_reversed_by_its_stan(aiohttp_server: Any) -> None:
    """A stand-in gateway that never answers purchases in time but answers reversals."""
    received: list[dict[str, Any]] = []
    release = asyncio.Event()

    async def transactions(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        received.append({**body, "terminal": request.headers["X-Terminal-Id"]})
        if body["type"] == "purchase":
            # Until the test ends, far beyond the client timeout.
            await asyncio.wait_for(release.wait(), 5)
        return web.json_response({"response_code": "00", "stan": body["stan"]})

    app = web.Application()
    app.router.add_post("/v1/transactions", transactions)
    server = await aiohttp_server(app)
    config = LoadConfig(
        url=str(server.make_url("")),
        terminals=2,
        duration_s=0.5,
        mix=parse_mix("purchase=1"),
        timeout_s=0.2,
        seed=1,
    )

    try:
        report = await run_load(config, _fake_world(1))
    finally:
        release.set()

    purchases = [r for r in received if r["type"] == "purchase"]
    reversals = [r for r in received if r["type"] == "reversal"]
    assert report["errors"]["timeout"] == len(purchases) == report["sent"] >= 2
    assert report["answered"] == 0
    assert report["reversals"]["sent"] == len(purchases)
    assert report["reversals"]["response_codes"] == {"00": len(purchases)}
    assert sorted((r["terminal"], r["original_stan"]) for r in reversals) == sorted(
        (p["terminal"], p["stan"]) for p in purchases
    )
    assert all(r["pan"] == "6217990000000000018" and r["amount"] == 100 for r in reversals)
    # Reversals take STANs of their own, from the same slices: no key is used twice.
    keys = [(r["terminal"], r["stan"]) for r in received]
    assert len(set(keys)) == len(keys)


async def test_a_stan_used_by_an_earlier_run_is_resent_under_the_next(
    aiohttp_server: Any,
) -> None:
    """A stand-in gateway that answers 94 to the first request of each terminal."""
    seen: dict[str, list[str]] = {}

    async def transactions(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        stans = seen.setdefault(request.headers["X-Terminal-Id"], [])
        stans.append(body["stan"])
        code = "94" if len(stans) == 1 else "00"
        return web.json_response({"response_code": code, "stan": body["stan"], "amount": 100})

    app = web.Application()
    app.router.add_post("/v1/transactions", transactions)
    server = await aiohttp_server(app)
    config = LoadConfig(
        url=str(server.make_url("")), terminals=1, duration_s=0.3,
        mix=parse_mix("purchase=1"), seed=1,
    )  # fmt: skip

    report = await run_load(config, _fake_world(1))

    [stans] = seen.values()
    assert report["stan_collisions"] == 1
    assert "94" not in report["response_codes"] and report["response_codes"]["00"] >= 1
    assert stans[1] != stans[0] and len(set(stans)) == len(stans)


async def test_a_run_that_starts_inside_an_earlier_runs_stans_leaves_them(
    aiohttp_server: Any,
) -> None:
    """A stand-in gateway for which the 200 STANs from the first one it sees were used by
    an earlier run today: after one 94 the run goes on from elsewhere in its slice, not
    into the next of those used STANs (which gave up with 94 after 3 resends)."""
    used: list[int] = []

    async def transactions(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        stan = int(body["stan"])
        if not used:
            used.extend(range(stan, stan + 200))
        code = "94" if stan in used else "00"
        return web.json_response({"response_code": code, "stan": body["stan"], "amount": 100})

    app = web.Application()
    app.router.add_post("/v1/transactions", transactions)
    server = await aiohttp_server(app)
    config = LoadConfig(
        url=str(server.make_url("")), terminals=1, duration_s=0.3,
        mix=parse_mix("purchase=1"), seed=1,
    )  # fmt: skip

    report = await run_load(config, _fake_world(1))

    assert report["stan_collisions"] == 1
    assert "94" not in report["response_codes"] and report["response_codes"]["00"] >= 1


async def test_load_stops_by_itself_against_a_gateway_that_is_down() -> None:
    config = LoadConfig(url="http://127.0.0.1:9", terminals=2, duration_s=0.3, timeout_s=1)

    report = await run_load(config, _fake_world(2))

    assert report["answered"] == 0 and report["errors"].get("connection", 0) >= 2
    assert report["reversals"]["sent"] == 0  # nothing reached a gateway: nothing to reverse


# Against the gateway ------------------------------------------------------------------


async def _recorded(db, terminals: list[str], since: Any) -> dict[str, Any]:
    rows = await db.fetch(
        """
        SELECT txn_type, response_code, count(*) AS n,
               coalesce(sum(amount) FILTER (WHERE NOT reversed), 0) AS amount,
               count(*) FILTER (WHERE NOT reversed) AS kept
        FROM transactions
        WHERE terminal_id = ANY($1::text[]) AND created_at >= $2
        GROUP BY txn_type, response_code
        """,
        terminals,
        since,
    )
    purchases = Counter({r["response_code"]: r["n"] for r in rows if r["txn_type"] == "purchase"})
    approved = next(
        (r for r in rows if r["txn_type"] == "purchase" and r["response_code"] == "00"), None
    )
    return {
        "purchase_codes": purchases,
        "approved_count": approved["kept"] if approved else 0,
        "approved_amount": approved["amount"] if approved else 0,
        "rows": sum(r["n"] for r in rows),
    }


async def _load_run(
    demo: dict[str, Any], client, db, tmp_path: Path, *args: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run `terminal-sim load` in a thread; return its JSON report and what the gateway
    recorded for the demo terminals meanwhile (a before/after delta)."""
    demo_path = tmp_path / "demo-load.json"
    demo_path.write_text(json.dumps(demo))
    out = tmp_path / "report.json"
    terminals = [t["terminal_id"] for t in designated_terminals(DemoWorld(demo))]
    since = await db.fetchval("SELECT clock_timestamp()")
    before = await _recorded(db, terminals, since)

    rc = await asyncio.to_thread(
        sim_cli.main,
        ["load", "--url", str(client.make_url("")), "--demo", str(demo_path),
         "--json", str(out), "--quiet", *args],
    )  # fmt: skip

    after = await _recorded(db, terminals, since)
    assert rc == 0
    report = json.loads(out.read_text())
    delta = {
        "purchase_codes": after["purchase_codes"] - before["purchase_codes"],
        "approved_count": after["approved_count"] - before["approved_count"],
        "approved_amount": after["approved_amount"] - before["approved_amount"],
        "rows": after["rows"] - before["rows"],
    }
    return report, delta


def _assert_report_matches_the_gateway(report: dict[str, Any], delta: dict[str, Any]) -> None:
    # Every request is accounted for, and every answered one carried a response code.
    assert report["sent"] == report["answered"] + report["errors_total"]
    assert sum(report["response_codes"].values()) == report["answered"]
    assert report["errors"] == {}  # generous timeout: nothing lost, nothing to reverse
    assert report["reversals"]["sent"] == 0
    # The approved purchases are the gateway's, one for one and fen for fen.
    approved = report["approved_purchases"]
    assert approved["count"] == delta["approved_count"] > 0
    assert approved["amount_fen"] == delta["approved_amount"]
    assert approved["amount_fen"] == approved["count"] * report["amount_fen"]
    reported = {
        code: n
        for code, n in report["by_type"]["purchase"].items()
        if code != "sent" and code not in UNRECORDED
    }
    assert reported == dict(delta["purchase_codes"])
    print(json.dumps({k: report[k] for k in ("model", "throughput_per_s", "latency_us")}))


async def test_closed_load_run_matches_the_gateways_journal(
    demo: dict[str, Any], client, db, tmp_path: Path
) -> None:
    report, delta = await _load_run(
        demo, client, db, tmp_path, "--terminals", "4", "--duration", "2", "--timeout", "30"
    )

    assert report["model"] == "closed" and report["terminals"] == 4
    _assert_report_matches_the_gateway(report, delta)
    assert set(report["by_type"]) <= {"purchase", "balance_inquiry"}


async def test_open_load_run_sends_on_schedule_and_matches_the_gateway(
    demo: dict[str, Any], client, db, tmp_path: Path
) -> None:
    report, delta = await _load_run(
        demo, client, db, tmp_path,
        "--terminals", "5", "--duration", "2", "--rate", "30", "--timeout", "30",
        "--mix", "purchase=8,balance_inquiry=1,cash_withdrawal=1", "--amount", "0.37",
        "--seed", "5",
    )  # fmt: skip

    assert report["model"] == "open" and report["rate"] == 30
    # The schedule, not the answers, sets how many leave: 30/s for 2 s.
    assert report["sent"] == 60
    _assert_report_matches_the_gateway(report, delta)
    withdrawals = report["by_type"].get("cash_withdrawal", {})
    assert set(withdrawals) <= {"sent", "57"}
    assert report["latency_us"]["count"] == report["answered"]


def test_load_needs_a_designated_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(_fake_world(1, designated=False).data))
    os.chmod(path, 0o600)

    rc = sim_cli.main(
        ["load", "--demo", str(path), "--duration", "1", "--url", "http://127.0.0.1:9"]
    )

    assert rc == 2
    assert "designated" in capsys.readouterr().err


async def test_a_closed_run_with_requests_made_ahead_matches_the_gateway(
    demo: dict[str, Any], client, db, tmp_path: Path
) -> None:
    """Requests signed before the run are within the gateway's timestamp window; a
    run that uses them all makes the rest as it goes."""
    report, delta = await _load_run(
        demo, client, db, tmp_path, "--terminals", "4", "--duration", "1.5",
        "--timeout", "30", "--mix", "purchase=1", "--prepare-ahead", "8",
    )  # fmt: skip
    _assert_report_matches_the_gateway(report, delta)
    assert report["prepared_ahead"] == 8
    assert report["made_during_run"] == report["sent"] - 8 > 0
