"""`pos-gateway catalogue import FILE.csv` and `pos-gateway policy import FILE.csv`
(DESIGN §10): the same all-or-nothing loading as the operator API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pos_gateway.settings import Settings

COMMANDS = frozenset({"catalogue", "policy"})


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_table(
        sub,
        "catalogue",
        "the medicine catalogue (A/B/C) of §10",
        import_help="add or replace items from a CSV file with the header "
        "code,name,category,self_pay_bp; bad rows are listed with their line numbers "
        "and nothing is loaded",
        list_help="print the catalogue as JSON",
    )
    _add_table(
        sub,
        "policy",
        "settlement policy per merchant kind and year",
        import_help="add or replace policies from a CSV file with the header merchant_kind,"
        "year,deductible,fund_ratio_bp,annual_cap[,daily_amount_limit,daily_count_limit] "
        "(fen, basis points); all or nothing",
        list_help="print the policies as JSON",
    )


def _add_table(
    sub: argparse._SubParsersAction, name: str, help: str, *, import_help: str, list_help: str
) -> None:
    """`NAME import FILE` and `NAME list`, the same two actions for either table."""
    table = sub.add_parser(name, help=help)
    actions = table.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("import", help=import_help).add_argument("file", type=Path)
    actions.add_parser("list", help=list_help)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from pos_gateway.domain.audit import SYSTEM, Actor
    from pos_gateway.services import settlement
    from pos_gateway.services.settlement import RowsRefused
    from pos_gateway.store.database import open_database

    text = None
    if args.action == "import":
        try:
            text = args.file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"pos-gateway: cannot read {args.file}: {exc}", file=sys.stderr)
            return 1
    async with open_database(settings) as db:
        if text is None:
            rows = await (
                settlement.catalogue(db.pool)
                if args.command == "catalogue"
                else settlement.policies(db.pool)
            )
            print(json.dumps(rows, indent=2))
            return 0
        load = {"catalogue": settlement.load_catalogue, "policy": settlement.load_policies}
        try:
            loaded = await load[args.command](
                db.pool, text, actor=Actor(SYSTEM, f"pos-gateway {args.command} import")
            )
        except RowsRefused as exc:
            print(f"pos-gateway: {args.file}: nothing loaded", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
    print(f"loaded {loaded} {'item' if args.command == 'catalogue' else 'policy'} row(s)")
    return 0
