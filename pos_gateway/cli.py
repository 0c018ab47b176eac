"""pos-gateway: serve, migrate, demo-data."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from pos_gateway import settlement_cli
from pos_gateway.logs import configure_logging
from pos_gateway.settings import ConfigError, Settings

log = structlog.get_logger("pos_gateway.cli")

_ENVIRONMENT_HELP = """\
environment:
  POS_DATABASE_URL   PostgreSQL URL; unset: embedded PostgreSQL under POS_DATA_DIR
  POS_DATA_DIR       data directory of the embedded database and generated secrets
                     (default ./.pos-data)
  POS_MASTER_KEY     64 hex chars: wraps terminal keys at rest
  POS_PIN_PEPPER     64 hex chars: secret mixed into every PIN hash
  POS_ADMIN_TOKEN    bearer token of the operator API
                     (the three secrets are generated into POS_DATA_DIR/secrets.json,
                     mode 0600, when unset and the database is embedded)
  POS_ARGON2_TIME_COST, POS_ARGON2_MEMORY_KIB, POS_ARGON2_PARALLELISM
                     PIN hash cost (default t=2, m=19456 KiB, p=1); anything weaker
                     is refused unless POS_ALLOW_WEAK_PIN_HASH=bench (benchmarks)
  POS_GROUP_COMMIT_MAX_BATCH, POS_GROUP_COMMIT_FLUSHERS
                     group commit of purchases (default 256 per batch, 2 flushers;
                     1 turns it off)
  POS_PIN_THREADS    threads verifying PINs (default: CPU count)
  POS_PIN_QUEUE_MAX  PIN checks waiting per process before new requests get 91 at
                     once, unrecorded (default 100)
  POS_LOG_LEVEL      debug | info | warning | error (default info)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pos-gateway",
        description="Medical-insurance card POS gateway.",
        epilog=_ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway (migrates first)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes sharing the port (SO_REUSEPORT); the gateway is stateless, "
        "so N processes use N cores (default 1)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    sub.add_parser("migrate", help="apply the SQL migrations in schema/ and exit")

    demo = sub.add_parser(
        "demo-data",
        help="create (or reuse) the demo world and write its terminals, cards and keys as JSON",
    )
    demo.add_argument("--out", required=True, type=Path, help="file to write (mode 0600)")

    verify = sub.add_parser(
        "verify-ledger",
        help="recompute every balance from the journal and check refunds and reversals; "
        "exit 1 with a report on any mismatch",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")

    eligibility = sub.add_parser(
        "eligibility",
        help="is a person covered for pooled-fund reimbursement on a date, and why",
    )
    eligibility.add_argument("--ssn", required=True, help="citizen ID number (18 characters)")
    eligibility.add_argument(
        "--date", type=_iso_date, default=None, help="YYYY-MM-DD (default: today)"
    )
    eligibility.add_argument("--json", action="store_true", help="print the answer as JSON")

    allocate = sub.add_parser(
        "allocate",
        help="monthly allocation run: credit every individual account from the month's "
        "contributions (idempotent per person and month)",
    )
    allocate.add_argument("--month", required=True, type=_iso_month, help="YYYY-MM")
    settlement_cli.add_commands(sub)
    return parser


def _iso_date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected YYYY-MM-DD") from None


def _iso_month(text: str):
    from pos_gateway.domain.months import parse_month

    try:
        return parse_month(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected YYYY-MM") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"pos-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve":
        if args.workers < 1:
            print("pos-gateway: --workers must be at least 1", file=sys.stderr)
            return 2
        if args.workers > 1:
            return _serve_workers(args.host, args.port, args.workers)
        return _serve(settings, args.host, args.port, reuse_port=args.reuse_port)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "demo-data":
        return asyncio.run(_demo_data(settings, args.out))
    if args.command == "verify-ledger":
        return asyncio.run(_verify_ledger(settings, as_json=args.json))
    if args.command == "eligibility":
        return asyncio.run(_eligibility(settings, args.ssn, args.date, as_json=args.json))
    if args.command == "allocate":
        return asyncio.run(_allocate(settings, args.month))
    if args.command in settlement_cli.COMMANDS:
        return asyncio.run(settlement_cli.run(settings, args))
    return 2  # pragma: no cover - argparse rejects unknown commands


def _serve(settings: Settings, host: str, port: int, *, reuse_port: bool = False) -> int:
    from aiohttp import web

    from pos_gateway.app import create_app

    log.info("gateway_starting", host=host, port=port, embedded=settings.database_url is None)
    try:
        web.run_app(
            create_app(settings),
            host=host,
            port=port,
            access_log=None,
            print=None,
            reuse_port=reuse_port or None,
        )
    except OSError as exc:
        # A taken port or a database that cannot start: one clear line, not a traceback.
        log.error("gateway_failed", error=str(exc))
        print(f"pos-gateway: cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    log.info("gateway_stopped")
    return 0


def _serve_workers(host: str, port: int, workers: int) -> int:
    """Supervise `workers` gateway processes on one port; stop them all on SIGTERM/SIGINT
    or when one of them dies."""
    import signal
    import subprocess
    import time

    command = [sys.executable, "-m", "pos_gateway", "serve", "--host", host, "--port", str(port)]
    children = [subprocess.Popen([*command, "--reuse-port"]) for _ in range(workers)]  # noqa: S603
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("workers_started", workers=workers, pids=[c.pid for c in children])
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    codes = [child.wait() for child in children]
    log.info("workers_stopped", exit_codes=codes)
    return 0 if stopping and all(c == 0 for c in codes) else 1


async def _migrate(settings: Settings) -> int:
    from pos_gateway.store.database import open_database

    async with open_database(settings):
        pass
    log.info("migrations_applied")
    return 0


async def _demo_data(settings: Settings, out: Path) -> int:
    from pos_gateway.app import build_services, business_today
    from pos_gateway.metrics import Metrics
    from pos_gateway.security.keys import KeyUnwrapError
    from pos_gateway.services.demo import build_demo_world
    from pos_gateway.store.database import open_database

    with ThreadPoolExecutor(max_workers=settings.pin_threads) as executor:
        async with open_database(settings) as db:
            services = build_services(settings, db.pool, executor, Metrics())
            try:
                world = await build_demo_world(
                    services.admin,
                    services.key_wrapper,
                    db.pool,
                    business_today(settings)(),
                    settings.secrets.admin_token,
                )
            except KeyUnwrapError as exc:
                print(
                    f"pos-gateway: the keys of demo terminal {exc} were wrapped under another "
                    "POS_MASTER_KEY; use the original key or a new POS_DATA_DIR",
                    file=sys.stderr,
                )
                return 1
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(world, fh, indent=2)
        fh.write("\n")
    log.info(
        "demo_data_written",
        path=str(out),
        merchants=len(world["merchants"]),
        terminals=len(world["terminals"]),
        cards=len(world["cards"]),
    )
    return 0


async def _verify_ledger(settings: Settings, *, as_json: bool) -> int:
    from pos_gateway.services.reports import verify_ledger
    from pos_gateway.store.database import open_database

    async with open_database(settings) as db, db.pool.acquire() as conn:
        report = await verify_ledger(conn)
    if as_json:
        print(json.dumps(report, default=str, indent=2))
    else:
        checked = report["checked"]
        print(
            f"checked {checked['accounts']} accounts, {checked['journal_lines']} journal lines, "
            f"{checked['transactions']} transactions"
        )
        for name, rows in report["problems"].items():
            print(f"MISMATCH {name}: {len(rows)} row(s)")
            for row in rows:
                print(f"  {row}")
        print("ledger is consistent" if report["ok"] else "ledger has mismatches")
    return 0 if report["ok"] else 1


async def _eligibility(settings: Settings, ssn: str, day, *, as_json: bool) -> int:
    from pos_gateway.app import business_today
    from pos_gateway.domain.money import format_fen
    from pos_gateway.errors import ApiError
    from pos_gateway.logs import mask_ssn
    from pos_gateway.services.insurance import InsuranceService
    from pos_gateway.store.database import open_database

    async with open_database(settings) as db:
        service = InsuranceService(db.pool, business_today(settings))
        try:
            answer = await service.eligibility(ssn, day)
        except ApiError as exc:
            print(f"pos-gateway: {exc.message}", file=sys.stderr)
            return 1
    if as_json:
        print(json.dumps(answer, indent=2))
        return 0
    account = answer["individual_account"]
    verdict = "COVERED" if answer["covered"] else "NOT COVERED"
    usable = "usable at the POS" if account["usable_at_pos"] else f"{account['status']}"
    print(f"eligibility of {answer['name']} ({mask_ssn(answer['ssn'])}) on {answer['date']}:")
    print(f"  pooled-fund reimbursement: {verdict} ({answer['reason']})")
    print(f"  why: {answer['explanation']}")
    print(
        f"  individual account: {format_fen(account['balance'])} CNY, {usable} "
        "whatever the coverage"
    )
    return 0


async def _allocate(settings: Settings, month) -> int:
    from pos_gateway.app import business_today
    from pos_gateway.domain.audit import SYSTEM, Actor
    from pos_gateway.errors import ApiError
    from pos_gateway.services.insurance import InsuranceService
    from pos_gateway.store.database import open_database

    async with open_database(settings) as db:
        service = InsuranceService(db.pool, business_today(settings))
        try:
            report = await service.run_allocation(
                month, actor=Actor(SYSTEM, "pos-gateway allocate")
            )
        except ApiError as exc:
            print(f"pos-gateway: {exc.message}", file=sys.stderr)
            return 1
    print(json.dumps(report, indent=2))
    return 0
