"""pos-gateway: serve, migrate, demo-data."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import structlog

from pos_gateway import settlement_cli
from pos_gateway.logs import configure_logging
from pos_gateway.settings import ConfigError, Settings, ensure_embedded_secrets, environment_help

log = structlog.get_logger("pos_gateway.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pos-gateway",
        description="Medical-insurance card POS gateway.",
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Every command reads the same environment, so each --help lists it.
    sub.add_parser = functools.partial(  # type: ignore[method-assign]
        sub.add_parser,
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

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
    serve.add_argument(
        "--iso-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also listen for ISO 8583 terminals (DESIGN §9) on this port, same host "
        "(default: POS_ISO_PORT; unset: no ISO listener)",
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
    allocate.add_argument(
        "--json", action="store_true", help="print the report as JSON (amounts in fen)"
    )

    operator = sub.add_parser("operator", help="operator accounts of the office pages")
    operator_sub = operator.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    add = operator_sub.add_parser(
        "add", help="add an account; its one-time password is printed once, on stdout"
    )
    add.add_argument("name", help="user name: 2-32 characters a-z 0-9 . _ -")
    add.add_argument(
        "--role",
        action="append",
        required=True,
        choices=("counter", "officer", "admin"),
        help="counter | officer | admin; repeat for several",
    )
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


# The commands that may start a fresh embedded database generate its secrets first;
# loading the configuration itself never writes a file.
_GENERATE_SECRETS = frozenset({"serve", "migrate", "demo-data"})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in _GENERATE_SECRETS:
            ensure_embedded_secrets()
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"pos-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve":
        if args.workers < 1:
            print("pos-gateway: --workers must be at least 1", file=sys.stderr)
            return 2
        iso_port = args.iso_port if args.iso_port is not None else settings.iso_port
        if args.workers > 1:
            return _serve_workers(args.host, args.port, args.workers, iso_port)
        settings = replace(
            settings, iso_port=iso_port, iso_host=args.host, iso_reuse_port=args.reuse_port
        )
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
        return asyncio.run(_allocate(settings, args.month, as_json=args.json))
    if args.command == "operator":
        return asyncio.run(_operator_add(settings, args.name, args.role))
    if args.command in settlement_cli.COMMANDS:
        return asyncio.run(settlement_cli.run(settings, args))
    return 2  # pragma: no cover - argparse rejects unknown commands


def _serve(settings: Settings, host: str, port: int, *, reuse_port: bool = False) -> int:
    from aiohttp import web

    from pos_gateway.app import create_app

    log.info(
        "gateway_starting",
        host=host,
        port=port,
        iso_port=settings.iso_port,
        embedded=settings.database_url is None,
    )
    try:
        web.run_app(
            create_app(settings),
            host=host,
            port=port,
            access_log=None,
            # One line when the server listens (make serve, scripts read it).
            print=lambda _: print(
                f"pos-gateway ready on http://{host}:{port}/ (cardholder pages /, office "
                f"pages /office/, API /v1/)",
                flush=True,
            ),
            reuse_port=reuse_port or None,
        )
    except OSError as exc:
        # A taken port or a database that cannot start: one clear line, not a traceback.
        log.error("gateway_failed", error=str(exc))
        print(f"pos-gateway: cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    log.info("gateway_stopped")
    return 0


def _serve_workers(host: str, port: int, workers: int, iso_port: int | None = None) -> int:
    """Supervise `workers` gateway processes on one port; stop them all on SIGTERM/SIGINT
    or when one of them dies."""
    import signal
    import subprocess
    import time

    command = [sys.executable, "-m", "pos_gateway", "serve", "--host", host, "--port", str(port)]
    if iso_port is not None:
        command += ["--iso-port", str(iso_port)]
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
    from pos_gateway.http.insurance_state import build_insurance_services
    from pos_gateway.metrics import Metrics
    from pos_gateway.security.keys import KeyUnwrapError
    from pos_gateway.security.pins import PinHasher
    from pos_gateway.services.demo import build_demo_world
    from pos_gateway.services.operators import OperatorService
    from pos_gateway.store.database import open_database

    with ThreadPoolExecutor(max_workers=settings.pin_threads) as executor:
        async with open_database(settings) as db:
            services = build_services(settings, db.pool, executor, Metrics())
            today = business_today(settings)
            try:
                world = await build_demo_world(
                    services.admin,
                    services.key_wrapper,
                    db.pool,
                    today(),
                    settings.secrets.admin_token,
                    cardholder=build_insurance_services(
                        settings, db.pool, executor, today
                    ).cardholder,
                    operators=OperatorService(
                        db.pool, PinHasher(settings.secrets.pin_pepper, settings.argon2), executor
                    ),
                )
            except KeyUnwrapError as exc:
                print(
                    f"pos-gateway: the keys of demo terminal {exc} were wrapped under another "
                    "POS_MASTER_KEY; use the original key or a new POS_DATA_DIR",
                    file=sys.stderr,
                )
                return 1
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the mode above applies only to a new file; keys and PINs go in
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
    from pos_gateway.domain.display import format_cny
    from pos_gateway.errors import DomainError
    from pos_gateway.logs import mask_ssn
    from pos_gateway.services.insurance import InsuranceService
    from pos_gateway.store.database import open_database

    async with open_database(settings) as db:
        service = InsuranceService(db.pool, business_today(settings))
        try:
            answer = await service.eligibility(ssn, day)
        except DomainError as exc:
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
    print(f"  individual account: {format_cny(account['balance'])}, {usable} whatever the coverage")
    return 0


async def _allocate(settings: Settings, month, *, as_json: bool = False) -> int:
    from datetime import datetime

    from pos_gateway.app import business_today
    from pos_gateway.domain.audit import SYSTEM, Actor
    from pos_gateway.domain.display import SCHEME_TZ, format_cny
    from pos_gateway.errors import DomainError
    from pos_gateway.services.insurance import InsuranceService
    from pos_gateway.store.database import open_database

    async with open_database(settings) as db:
        service = InsuranceService(db.pool, business_today(settings))
        try:
            report = await service.run_allocation(
                month, actor=Actor(SYSTEM, "pos-gateway allocate")
            )
        except DomainError as exc:
            print(f"pos-gateway: {exc.message}", file=sys.stderr)
            return 1
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    run, allocated = report["this_run"], report["allocated"]
    print(f"allocation run for {report['month']} ({report['reference']}), finished "
          f"{datetime.now(SCHEME_TZ):%Y-%m-%d %H:%M:%S} Asia/Shanghai")  # fmt: skip
    print(f"  this run: {run['persons']} people credited {format_cny(run['amount'])}")
    print(
        f"  the month in all: {allocated['persons']} people, {format_cny(allocated['amount'])} "
        f"to individual accounts, {format_cny(allocated['to_pooled_fund'])} to the pooled fund"
    )
    print(f"  still waiting: {report['pending_persons']} people")
    return 0


async def _operator_add(settings: Settings, name: str, roles: list[str]) -> int:
    from pos_gateway.errors import DomainError
    from pos_gateway.security.pins import PinHasher
    from pos_gateway.services.operators import OperatorService
    from pos_gateway.store.database import open_database

    with ThreadPoolExecutor(max_workers=1) as executor:
        async with open_database(settings) as db:
            service = OperatorService(
                db.pool, PinHasher(settings.secrets.pin_pepper, settings.argon2), executor
            )
            try:
                password = await service.add(name, roles)
            except DomainError as exc:
                print(f"pos-gateway: {exc.message}", file=sys.stderr)
                return 1
    print(f"operator {name} added with roles {', '.join(sorted(set(roles)))}")
    print(f"one-time password (shown once; to be changed at the first login): {password}")
    return 0
