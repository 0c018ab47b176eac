"""terminal-sim bench --scale: how the cost of a purchase grows with the data.

One gateway (cheap PIN hash, so the figures show the data's cost, not the hash's) on a
temporary embedded database. Size after size, cards (each with its person and account)
and their journal rows are loaded straight into PostgreSQL by COPY — the API would take
hours for 10^6 cards — then purchases run over the API as in the bench, and a statement
page at the far end of a long statement is timed against one of a short statement.

The loader reads the database's layout from the tables it fills; it imports nothing
from the gateway.
"""

from __future__ import annotations

import json
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from terminal_sim.bench import (
    CHEAP_ARGON2,
    CHEAP_RATE_GUESS,
    BenchConfig,
    BenchError,
    Gateway,
    _argon2_env,
    _citizen_id,
    _load,
    _phase,
    build_world,
)
from terminal_sim.cpu import render_split

CHUNK = 100_000  # rows per COPY round: bounded memory at any size
FILLER_INDEX = 1_000_000  # filler people's ids never meet build_world's (0..cards)
ALLOCATION_FEN = 1000
TIMED_REQUESTS = 20


@dataclass(frozen=True, slots=True)
class ScaleConfig:
    sizes: tuple[int, ...] = (1000, 100_000, 1_000_000)
    journal_per_card: int = 10  # 10^7 journal rows at 10^6 cards
    statement_entries: int = 100_000
    short_statement_entries: int = 10
    statement_page: int = 50
    api_cards: int = 20  # the cards purchases use, issued through the API


def _luhn_complete(body: str) -> str:
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:  # doubled: the check digit will sit to its right
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return body + str((10 - total % 10) % 10)


async def connect(pgdata: Path) -> asyncpg.Connection:
    """The gateway's database on the embedded server behind `pgdata` (the one database
    there besides postgres and the bench's pgbench)."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    where = {"host": lines[4].strip() or "127.0.0.1", "port": int(lines[3]), "user": "postgres"}
    admin = await asyncpg.connect(**where, database="postgres")
    try:
        names = [
            r["datname"]
            for r in await admin.fetch(
                "SELECT datname FROM pg_database WHERE NOT datistemplate"
                " AND datname NOT IN ('postgres', 'pgbench')"
            )
        ]
    finally:
        await admin.close()
    if len(names) != 1:
        raise BenchError(f"cannot tell the gateway's database among {names}")
    return await asyncpg.connect(**where, database=names[0])


class Filler:
    """Cards, accounts, people and journal rows by COPY, numbered on from the last load."""

    def __init__(self, conn: asyncpg.Connection, pin_hash: str) -> None:
        self.conn = conn
        self.pin_hash = pin_hash
        self.loaded = 0
        self.expires = date.today() + timedelta(days=3 * 365)

    async def add(self, cards: int, journal_per_card: int) -> int:
        """Add `cards` cards with `journal_per_card` allocations each; return the first
        new account's id."""
        conn = self.conn
        first = await conn.fetchval(
            "SELECT coalesce(max(account_id), 0) + 1 FROM individual_accounts"
        )
        for start in range(0, cards, CHUNK):
            indexes = range(self.loaded + start, self.loaded + min(start + CHUNK, cards))
            ssns = [_citizen_id(FILLER_INDEX + i) for i in indexes]
            accounts = [first + i - self.loaded for i in indexes]
            await conn.copy_records_to_table(
                "people", records=[(s, "Filler") for s in ssns], columns=["ssn", "name"]
            )
            # COPY writes the given ids into the identity column (no OVERRIDING needed).
            await conn.copy_records_to_table(
                "individual_accounts",
                records=[
                    (a, s, journal_per_card * ALLOCATION_FEN)
                    for a, s in zip(accounts, ssns, strict=True)
                ],
                columns=["account_id", "ssn", "balance"],
            )
            await conn.copy_records_to_table(
                "cards",
                records=[
                    (_luhn_complete(f"8{i:014d}"), a, self.expires, self.pin_hash)
                    for i, a in zip(indexes, accounts, strict=True)
                ],
                columns=["pan", "account_id", "expires_on", "pin_hash"],
            )
            await self._journal(accounts, journal_per_card)
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('individual_accounts', 'account_id'),"
            " (SELECT max(account_id) FROM individual_accounts))"
        )
        self.loaded += cards
        return int(first)

    async def _journal(self, accounts: list[int], per_account: int) -> None:
        def rows() -> Iterator[tuple[int, str, int, int, str]]:
            for account in accounts:
                for k in range(1, per_account + 1):
                    yield (account, "allocation", ALLOCATION_FEN, k * ALLOCATION_FEN, "scale")

        await self.conn.copy_records_to_table(
            "journal",
            records=rows(),
            columns=["account_id", "kind", "amount", "balance_after", "reference"],
        )


async def _fetch_page(
    session: aiohttp.ClientSession, account: int, limit: int, cursor: str | None
) -> tuple[dict[str, Any], float]:
    params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
    started = time.perf_counter()
    async with session.get(f"/v1/admin/accounts/{account}/statement", params=params) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise BenchError(f"statement of account {account}: HTTP {resp.status} {body}")
    return body, time.perf_counter() - started


async def far_cursor(
    session: aiohttp.ClientSession, account: int, page: int
) -> tuple[str | None, int]:
    """Page through a statement as a client does, in long pages, then in pages of `page`
    entries over the last long one; return the cursor of the last page of `page` and the
    number of entries before it."""
    cursor, before, step = None, 0, 500
    while True:
        body, _ = await _fetch_page(session, account, step, cursor)
        if body["next_cursor"] is None:
            if step <= page:
                return cursor, before
            step = page  # the same cursor again, in short pages to the very end
            continue
        before += len(body["entries"])
        cursor = body["next_cursor"]


async def time_page(
    session: aiohttp.ClientSession, account: int, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Median and max of TIMED_REQUESTS fetches of one page, in ms."""
    seconds, entries = [], 0
    for _ in range(TIMED_REQUESTS):
        body, elapsed = await _fetch_page(session, account, limit, cursor)
        seconds.append(elapsed)
        entries = len(body["entries"])
    return {
        "entries": entries,
        "median_ms": round(statistics.median(seconds) * 1000, 2),
        "max_ms": round(max(seconds) * 1000, 2),
    }


async def run_scale(
    config: BenchConfig, scale: ScaleConfig, say: Callable[[str], None] = print
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="pos-scale-"))
    admin_token = secrets.token_urlsafe(24)
    env = {
        "POS_MASTER_KEY": secrets.token_hex(32),
        "POS_PIN_PEPPER": secrets.token_hex(32),
        "POS_ADMIN_TOKEN": admin_token,
        **_argon2_env(CHEAP_ARGON2),
        "POS_ALLOW_WEAK_PIN_HASH": "bench",
    }
    config.out_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.out_dir / "gateway-scale.log"
    log_path.unlink(missing_ok=True)
    results: dict[str, Any] = {
        "config": {
            "sizes": list(scale.sizes),
            "journal_per_card": scale.journal_per_card,
            "statement_entries": scale.statement_entries,
            "duration_s": config.duration_s,
            "terminals": config.terminals,
            "gateway_log_level": config.log_level,
            "argon2": CHEAP_ARGON2,
        },
        "steps": [],
    }
    gateway = Gateway(
        workdir / "data", config.port, config.workers, env, log_path, config.log_level
    )
    try:
        await gateway.start()
        world = await build_world(gateway.url, admin_token, config.terminals, scale.api_cards)
        conn = await connect(gateway.pgdata)
        headers = {"Authorization": f"Bearer {admin_token}"}
        async with aiohttp.ClientSession(base_url=gateway.url, headers=headers) as session:
            try:
                filler = Filler(conn, await conn.fetchval("SELECT pin_hash FROM cards LIMIT 1"))
                say(
                    f"statements of {scale.statement_entries} and "
                    f"{scale.short_statement_entries} entries ..."
                )
                long_account = await filler.add(1, scale.statement_entries)
                short_account = await filler.add(1, scale.short_statement_entries)
                cursor, before_far = await far_cursor(session, long_account, scale.statement_page)
                for size in scale.sizes:
                    cards_now = await conn.fetchval("SELECT count(*) FROM cards")
                    adding = max(size - cards_now, 0)
                    say(
                        f"{size:,} cards: loading {adding:,} cards and "
                        f"{adding * scale.journal_per_card:,} journal rows by COPY ..."
                    )
                    started = time.perf_counter()
                    await filler.add(adding, scale.journal_per_card)
                    load_s = time.perf_counter() - started
                    await conn.execute("ANALYZE")
                    counts = await conn.fetchrow(
                        "SELECT (SELECT count(*) FROM cards) AS cards,"
                        " (SELECT count(*) FROM journal) AS journal"
                    )
                    say(f"{counts['cards']:,} cards: purchases for {config.duration_s:g} s ...")
                    step = {
                        "size": size,
                        "cards": counts["cards"],
                        "journal_rows": counts["journal"],
                        "copy_s": round(load_s, 1),
                        "purchases": _phase(
                            await _load(gateway, world, config, expect_per_s=CHEAP_RATE_GUESS)
                        ),
                        "statement_far": {
                            **await time_page(session, long_account, scale.statement_page, cursor),
                            "entries_before": before_far,
                        },
                        "statement_short": await time_page(
                            session, short_account, scale.statement_page, None
                        ),
                    }
                    step["purchases"].pop("timeline")
                    results["steps"].append(step)
            finally:
                await conn.close()
    finally:
        gateway.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    json_path = config.out_dir / "scale.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    chart = write_scale_chart(results, config.out_dir / "scale.png")
    results["files"] = {"json": str(json_path), "chart": chart}
    return results


def write_scale_chart(results: dict[str, Any], path: Path) -> str | None:
    """Latency, throughput and statement page time against the number of cards."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = results["steps"]
    cards = [s["cards"] for s in steps]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for key, label in (("p50", "p50"), ("p99", "p99")):
        top.plot(
            cards,
            [s["purchases"]["latency_us"][key] / 1000 for s in steps],
            "o-",
            label=f"purchase {label}",
        )
    top.set_ylabel("latency (ms)")
    top.set_ylim(bottom=0)
    top.legend(fontsize="small")
    middle.plot(cards, [s["purchases"]["purchases_per_s"] for s in steps], "o-")
    middle.set_ylabel("purchases/s")
    middle.set_ylim(bottom=0)
    bottom.plot(
        cards,
        [s["statement_far"]["median_ms"] for s in steps],
        "o-",
        label=f"page at the far end of {results['config']['statement_entries']:,}",
    )
    bottom.plot(
        cards,
        [s["statement_short"]["median_ms"] for s in steps],
        "o-",
        label="page of a 10-entry statement",
    )
    bottom.set_ylabel("statement page (ms, median)")
    per_card = results["config"]["journal_per_card"]
    bottom.set_xlabel(f"cards in the database (journal rows: {per_card} per card)")
    bottom.legend(fontsize="small")
    bottom.set_xscale("log")
    fig.suptitle("POS gateway: cost against data size (cheap PIN hash)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def render_scale(results: dict[str, Any]) -> str:
    lines = [
        f"{'cards':>10} {'journal':>11} {'COPY s':>7} {'purch/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'far page ms':>11} {'short page ms':>13}"
    ]
    for s in results["steps"]:
        p = s["purchases"]
        lines.append(
            f"{s['cards']:>10,} {s['journal_rows']:>11,} {s['copy_s']:>7.1f} "
            f"{p['purchases_per_s']:>8.1f} {p['latency_us']['p50'] / 1000:>7.2f} "
            f"{p['latency_us']['p99'] / 1000:>7.2f} {s['statement_far']['median_ms']:>11.2f} "
            f"{s['statement_short']['median_ms']:>13.2f}"
        )
    lines.append("CPU per approved purchase at each size:")
    lines.extend(
        f"  {s['cards']:>10,} cards: {render_split(s['purchases']['cpu'])}"
        for s in results["steps"]
    )
    far = results["steps"][0]["statement_far"] if results["steps"] else None
    if far:
        lines.append(f"far page: {far['entries']} entries after {far['entries_before']:,}")
    return "\n".join(lines)
