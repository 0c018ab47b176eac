"""terminal-sim: drive the gateway like a POS terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from rich.console import Console

from terminal_sim.client import Answer, Terminal, TerminalConfig, wait_healthy
from terminal_sim.demo import DemoLookupError, DemoWorld
from terminal_sim.iso import ECHO, SIGN_OFF, SIGN_ON, IsoConnection, IsoTerminal, describe_fields
from terminal_sim.items import items_total, parse_items, render_split
from terminal_sim.load import DEFAULT_MIX, LoadConfig, LoadError, parse_mix, run_load
from terminal_sim.protocol import (
    format_amount,
    parse_amount,
    parse_figures,
    parse_stan,
)
from terminal_sim.report import render_report
from terminal_sim.scenario import ScenarioError, describe_request, load_scenario, run_scenario

DEFAULT_URL = "http://127.0.0.1:8080"
# Command name -> protocol type, for the commands that send one transaction.
NETWORK_COMMANDS = {"sign-on": SIGN_ON, "sign-off": SIGN_OFF, "echo": ECHO}
TRANSACTION_COMMANDS = {
    "purchase": "purchase",
    "balance": "balance_inquiry",
    "cash-withdrawal": "cash_withdrawal",
    "transfer": "transfer",
    "refund": "refund",
    "reversal": "reversal",
    "trial": "settlement_trial",
}


def _argument_type(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Wrap a parser so argparse shows its message instead of 'invalid value'."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name
    return convert


def _rrn(text: str) -> str:
    if not (text.isascii() and text.isdigit() and len(text) == 12):
        raise ValueError(f"an RRN is the 12 digits of the original's answer: {text!r}")
    return text


def _positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"expected a positive whole number: {text!r}")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"expected a whole number: {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"expected a positive number: {text!r}")
    return value


AMOUNT = _argument_type(parse_amount, "amount")
STAN = _argument_type(parse_stan, "STAN")
RRN = _argument_type(_rrn, "RRN")
FIGURES = _argument_type(parse_figures, "COUNT:AMOUNT")
POSITIVE_INT = _argument_type(_positive_int, "positive integer")
POSITIVE_FLOAT = _argument_type(_positive_float, "positive number")
NON_NEGATIVE_INT = _argument_type(_non_negative_int, "whole number")
MIX = _argument_type(parse_mix, "mix")
ITEMS = _argument_type(parse_items, "items")


def _items_args(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--items",
        type=ITEMS,
        required=required,
        metavar="CODE:QTY:PRICE,...",
        help="itemised (DESIGN §10): catalogue code, quantity, unit price in CNY; the "
        "answer shows the split between pooled fund, individual account and cash",
    )
    parser.add_argument(
        "--account-max",
        type=AMOUNT,
        metavar="CNY",
        help="the most the individual account pays of an itemised purchase (rest in cash)",
    )


def _url_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"gateway URL (default {DEFAULT_URL})")


def _protocol_args(parser: argparse.ArgumentParser, *, iso_only: bool = False) -> None:
    group = parser.add_argument_group(
        "protocol",
        "ISO 8583 (DESIGN §9) goes to the host of --url on the port of the gateway's "
        "`serve --iso-port`",
    )
    if not iso_only:
        group.add_argument(
            "--protocol",
            choices=("json", "iso8583"),
            default="json",
            help="JSON over HTTP (default) or ISO 8583 over TCP (needs --iso-port)",
        )
    group.add_argument("--iso-port", type=POSITIVE_INT, metavar="PORT", help="ISO 8583 port")
    group.add_argument(
        "--show-fields",
        action="store_true",
        help="print each ISO 8583 message's fields (PAN masked, PIN block and MAC elided)",
    )


def _terminal_args(
    parser: argparse.ArgumentParser, *, stan: bool = True, iso_only: bool = False
) -> None:
    _protocol_args(parser, iso_only=iso_only)
    group = parser.add_argument_group(
        "terminal", "which terminal sends: --demo FILE --terminal ID, or --terminal-id with keys"
    )
    _url_arg(group)
    group.add_argument(
        "--demo", type=Path, metavar="FILE", help="demo JSON written by `pos-gateway demo-data`"
    )
    group.add_argument(
        "--terminal", metavar="ID", help="terminal id or alias in the demo file (e.g. pharm001)"
    )
    group.add_argument(
        "--terminal-id", metavar="ID", help="terminal id (8 characters), with the two keys"
    )
    group.add_argument("--mac-key", metavar="HEX", help="MAC key in hex (instead of --demo)")
    group.add_argument("--pin-key", metavar="HEX", help="AES-128 PIN key in hex (not --demo)")
    if stan:
        group.add_argument(
            "--stan",
            type=STAN,
            help="this request's system trace audit number, 1-6 digits (default random); "
            "sending the same request again with the same STAN gets the stored answer",
        )
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")


def _card_args(parser: argparse.ArgumentParser, *, pin: bool, required: bool = True) -> None:
    when = "" if required else " (optional)"
    parser.add_argument("--card", help=f"card alias or PAN from the demo file{when}")
    parser.add_argument("--pan", help=f"card number, instead of --card{when}")
    if pin:
        parser.add_argument("--pin", help="PIN (default: the card's PIN from the demo file)")


EXIT_STATUS_HELP = """\
exit status:
  0  the gateway answered with HTTP 200. For purchase, balance, refund, reversal,
     cash-withdrawal and transfer this includes declines: the response code printed
     (51, 55, 75, ...) says whether it was approved; scripts check it, or use --json.
     close-batch: 0 only when the batch is in balance. scenario: every step as
     expected. load: at least one request answered. wait: the gateway is healthy.
  1  the gateway refused the request (HTTP 4xx/5xx, e.g. 401 for a wrong key), a close
     out of balance, a scenario step not as expected, or wait gave up
  2  usage error: bad arguments, an unreadable demo file or scenario
  3  the gateway could not be reached or did not answer in time

Amounts above the gateway's POS_MAX_AMOUNT_FEN (default 5000000 fen = 50,000.00 CNY
per transaction) are declined with 13.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="terminal-sim",
        description="POS terminal simulator for the medical-insurance card gateway. "
        "Amounts are typed in CNY (12.50) and sent exactly in fen.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "purchase",
        help="pay for medicine with card and PIN",
        description="Purchase: debit the card's individual account (card and PIN).",
    )
    _terminal_args(p)
    _card_args(p, pin=True)
    p.add_argument(
        "amount",
        type=AMOUNT,
        nargs="?",
        help="amount in CNY, e.g. 12.50 (exactly in fen); with --items, default their sum",
    )
    _items_args(p, required=False)

    p = sub.add_parser(
        "trial",
        help="settlement trial: the split of an itemised purchase, moving nothing",
        description="Settlement trial (DESIGN §10): what the pooled fund, the individual "
        "account and cash would pay for these items now. Sent without a PIN unless --pin "
        "is given (a PIN sent counts like any PIN).",
    )
    _terminal_args(p)
    _card_args(p, pin=True)
    p.add_argument("amount", type=AMOUNT, nargs="?", help="amount in CNY (default: the sum)")
    _items_args(p, required=True)

    p = sub.add_parser(
        "balance",
        help="balance inquiry (card and PIN)",
        description="Balance inquiry: the individual account's balance (card and PIN).",
    )
    _terminal_args(p)
    _card_args(p, pin=True)

    for kind in ("cash-withdrawal", "transfer"):
        p = sub.add_parser(
            kind,
            help=f"try a {kind.replace('-', ' ')} (always refused: 57)",
            description=f"Try a {kind.replace('-', ' ')}: a medical-insurance card never "
            "allows it, so the gateway declines it with 57 and records the decline.",
        )
        _terminal_args(p)
        _card_args(p, pin=True)
        p.add_argument("amount", type=AMOUNT, help="amount in CNY, e.g. 100.00")

    p = sub.add_parser(
        "refund",
        help="refund (part of) an approved purchase, by its RRN; no PIN",
        description="Refund: credit back all or part of an approved purchase, named by the "
        "RRN of its answer. No PIN. Several refunds may add up to the original amount, "
        "no more (13 above what is left; 12 for an unknown RRN).",
    )
    _terminal_args(p)
    p.add_argument(
        "--original-rrn",
        required=True,
        type=RRN,
        metavar="RRN",
        help="the purchase's RRN (12 digits)",
    )
    _card_args(p, pin=False, required=False)
    p.add_argument("amount", type=AMOUNT, help="amount to refund in CNY, e.g. 5.00")

    p = sub.add_parser(
        "reversal",
        help="reverse this terminal's own earlier request, by its STAN",
        description="Reversal: cancel this terminal's own earlier request of today whose "
        "answer it did not get, named by that request's STAN. The gateway reverses what it "
        "recorded; a reversal that arrives first blocks the original.",
    )
    _terminal_args(p)
    p.add_argument(
        "--original-stan",
        required=True,
        type=STAN,
        metavar="STAN",
        help="STAN of the request to reverse (1-6 digits)",
    )
    _card_args(p, pin=False, required=False)
    p.add_argument(
        "--amount", type=AMOUNT, help="the original's amount in CNY (optional, informative)"
    )

    p = sub.add_parser(
        "close-batch",
        help="close the terminal's open batch with its counts and totals",
        description="Batch close: send the terminal's counts and totals of approved "
        "purchases and refunds since its last close (reversed purchases left out). The "
        "gateway compares them with its own and opens the next batch. Exit status 0 when "
        "in balance, 1 when out of balance or refused (a wrong batch number gets HTTP 409 "
        "naming the open batch).",
    )
    _terminal_args(p, stan=False)
    p.add_argument(
        "--batch-no",
        type=POSITIVE_INT,
        metavar="N",
        help="number of the open batch (1, 2, …); default: ask the gateway which is open",
    )
    p.add_argument(
        "--purchases",
        type=FIGURES,
        default="0:0",
        metavar="COUNT:AMOUNT",
        help="approved purchases: count and total in CNY, e.g. 3:37.50 (default 0:0)",
    )
    p.add_argument(
        "--refunds",
        type=FIGURES,
        default="0:0",
        metavar="COUNT:AMOUNT",
        help="approved refunds: count and total in CNY, e.g. 1:5.00 (default 0:0)",
    )

    for name, what in (("sign-on", "sign on (0800, 001): the answer names the open batch"),
                       ("sign-off", "sign off (0800, 002)"),
                       ("echo", "echo test (0800, 301): is the ISO 8583 link up")):  # fmt: skip
        p = sub.add_parser(
            name,
            help=f"ISO 8583 {what}",
            description=f"ISO 8583 network management: {what}. Needs --iso-port.",
        )
        _terminal_args(p, stan=False, iso_only=True)

    p = sub.add_parser(
        "load",
        help="load test: N terminals for S seconds; latency, throughput, codes",
        description="Load test against one gateway URL, stopping by itself after --duration. "
        "Terminals of designated merchants and active cards come from the demo file. With "
        "--rate: open model, requests on a fixed schedule, latency from each request's "
        "intended send time; without: closed model, each terminal waits for its answer. "
        "Requests that time out are reversed, as a real terminal would.",
    )
    _url_arg(p)
    p.add_argument(
        "--demo",
        type=Path,
        required=True,
        metavar="FILE",
        help="demo JSON written by `pos-gateway demo-data`",
    )
    p.add_argument(
        "--terminals",
        type=POSITIVE_INT,
        default=4,
        metavar="N",
        help="concurrent simulated terminals (default 4); real terminal ids are shared, "
        "each simulated terminal with its own STAN range",
    )
    p.add_argument(
        "--duration",
        type=POSITIVE_FLOAT,
        default=10.0,
        metavar="S",
        help="seconds of sending (default 10, at most 3600)",
    )
    p.add_argument(
        "--rate",
        type=POSITIVE_FLOAT,
        metavar="R",
        help="total requests per second, open model (default: closed model)",
    )
    p.add_argument(
        "--mix",
        type=MIX,
        default=DEFAULT_MIX,
        help=f"request types and relative weights (default {DEFAULT_MIX}); types: "
        "purchase, balance_inquiry, cash_withdrawal, transfer",
    )
    p.add_argument(
        "--amount", type=AMOUNT, default="1.00", help="amount of each request in CNY (default 1.00)"
    )
    p.add_argument(
        "--timeout",
        type=POSITIVE_FLOAT,
        default=5.0,
        metavar="SECONDS",
        help="client timeout per request (default 5); a purchase not answered in time is reversed",
    )
    p.add_argument(
        "--json", type=Path, metavar="OUT", help="also write the report as JSON to this file"
    )
    p.add_argument("--quiet", action="store_true", help="no live progress line")
    p.add_argument("--seed", type=int, help="seed for the choice of types and cards")
    p.add_argument(
        "--itemised-share",
        type=float,
        default=0.0,
        metavar="F",
        help="share of purchases sent itemised, 0 to 1 (default 0): 1 to 3 lines from the "
        "demo catalogue, counted apart as purchase_itemised (DESIGN §10)",
    )
    p.add_argument(
        "--prepare-ahead", type=NON_NEGATIVE_INT, default=0, metavar="N",
        help="make N requests (signed or MACed, PIN blocks enciphered) before the run "
        "starts, so that the generator spends less CPU during it (default 0)",
    )  # fmt: skip
    _protocol_args(p)

    p = sub.add_parser(
        "scenario",
        help="run a scripted TOML scenario; non-zero exit on mismatch",
        description="Run a scripted scenario: steps with expected response codes and "
        "balances. Exit status 1 on any mismatch.",
    )
    p.add_argument(
        "file",
        type=Path,
        help="scenario TOML file (format: docs/scenarios.md, scenarios/demo.toml)",
    )
    _url_arg(p)
    p.add_argument(
        "--demo", type=Path, required=True, help="demo JSON written by `pos-gateway demo-data`"
    )
    _protocol_args(p)

    p = sub.add_parser(
        "bench",
        help="measure purchases/s against raw argon2 and pgbench; write JSON and a chart",
        description="Start `pos-gateway serve` on a temporary embedded database and measure, "
        "in one run, production first: one PIN verification; purchases/s with the "
        "production PIN hash against raw argon2id verifications/s on the same cores, and "
        "p50/p99 in the open model at half that rate; purchases/s with a cheap (bench-only) "
        "PIN hash over JSON and ISO 8583 against pgbench TPC-B on the same server, duration "
        "and clients, and p50/p99 at half that rate; the gateway's peak RSS; the CPU split "
        "of every run. A last table gives issue 13's targets, met or not. Figures are "
        "printed and written to OUT_DIR/bench.json and bench.png (with matplotlib).",
    )
    p.add_argument(
        "--duration", type=POSITIVE_FLOAT, default=15.0, metavar="S",
        help="seconds of each measured run (default 15)",
    )  # fmt: skip
    p.add_argument(
        "--terminals", type=POSITIVE_INT, default=32, metavar="N",
        help="concurrent terminals, and pgbench clients (default 32)",
    )  # fmt: skip
    p.add_argument(
        "--workers",
        type=POSITIVE_INT,
        default=1,
        help="gateway processes (default 1: on 2 cores shared with the load generator and "
        "PostgreSQL, a second worker measured slower)",
    )
    p.add_argument(
        "--cards", type=POSITIVE_INT, default=200, help="cards in the cheap-hash runs (default 200)"
    )
    p.add_argument(
        "--port",
        type=POSITIVE_INT,
        default=18400,
        help="gateway port (default 18400); its ISO 8583 listener takes the next one",
    )
    p.add_argument(
        "--protocol",
        choices=("json", "iso8583"),
        default="json",
        help="transport of the load runs (default json); the cheap-hash run is also "
        "repeated over the other one, for purchases/s by protocol",
    )
    p.add_argument(
        "--out-dir", type=Path, default=Path("bench-out"),
        help="where bench.json and bench.png go (default bench-out)",
    )  # fmt: skip
    p.add_argument(
        "--log-level", choices=("info", "warning"), default="info",
        help="the gateway's log level (default info, as production: one line per "
        "transaction); warning gives the figure without those lines",
    )  # fmt: skip
    p.add_argument(
        "--scale", action="store_true",
        help="instead: cost growth - load cards and journal rows by COPY, size after size, "
        "and measure purchases and a far statement page at each (see --scale-sizes)",
    )  # fmt: skip
    p.add_argument(
        "--scale-sizes", type=_sizes, default=(1000, 100_000, 1_000_000), metavar="N,N,...",
        help="cards at each step of --scale (default 1000,100000,1000000)",
    )  # fmt: skip
    p.add_argument(
        "--scale-journal-per-card", type=POSITIVE_INT, default=10, metavar="K",
        help="journal rows loaded per card in --scale (default 10: 10^7 rows at 10^6 cards)",
    )  # fmt: skip
    p.add_argument(
        "--scale-statement", type=POSITIVE_INT, default=100_000, metavar="N",
        help="entries of the long statement in --scale (default 100000)",
    )  # fmt: skip

    p = sub.add_parser(
        "wait",
        help="wait until the gateway's /healthz answers 200",
        description="Wait until the gateway's /healthz answers 200 (exit 0) or give up (1).",
    )
    _url_arg(p)
    p.add_argument(
        "--timeout", dest="timeout_s", type=float, default=60.0, help="seconds (default 60)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "scenario":
            return asyncio.run(_scenario(args))
        if args.command == "wait":
            return asyncio.run(_wait(args.url, args.timeout_s))
        if args.command == "load":
            return asyncio.run(_load(args))
        if args.command == "close-batch":
            return asyncio.run(_close_batch(args))
        if args.command == "bench":
            return asyncio.run(_bench(args))
        if args.command in NETWORK_COMMANDS:
            return asyncio.run(_network(args))
        return asyncio.run(_single(args))
    except TimeoutError:
        print("terminal-sim: no answer from the gateway in time", file=sys.stderr)
        return 3
    except aiohttp.ClientError as exc:
        print(f"terminal-sim: cannot reach the gateway: {exc}", file=sys.stderr)
        return 3
    except DemoLookupError as exc:
        print(f"terminal-sim: {exc.args[0]}", file=sys.stderr)
        return 2
    except (ScenarioError, LoadError, ValueError, OSError) as exc:
        print(f"terminal-sim: {exc}", file=sys.stderr)
        return 2


def _resolve_terminal(args: argparse.Namespace, world: DemoWorld | None) -> TerminalConfig:
    if args.terminal_id:
        if not (args.mac_key and args.pin_key):
            raise ValueError("--terminal-id needs --mac-key and --pin-key")
        return TerminalConfig(
            args.terminal_id, bytes.fromhex(args.mac_key), bytes.fromhex(args.pin_key)
        )
    if world is None or not args.terminal:
        raise ValueError("give --demo FILE --terminal ID, or --terminal-id with keys")
    return TerminalConfig.from_demo(world.terminal(args.terminal))


def _resolve_card(
    args: argparse.Namespace, world: DemoWorld | None
) -> tuple[str | None, str | None]:
    """The card's PAN and PIN, from --pan/--pin or the demo file's --card."""
    card = None
    if args.card:
        if world is None:
            raise ValueError("--card needs --demo (or give --pan)")
        card = world.card(args.card)
    pan = args.pan or (card["pan"] if card else None)
    pin = getattr(args, "pin", None) or (card["pin"] if card else None)
    return pan, pin


def _transaction_fields(args: argparse.Namespace, world: DemoWorld | None) -> dict[str, Any]:
    txn_type = TRANSACTION_COMMANDS[args.command]
    pan, pin = _resolve_card(args, world)
    fields: dict[str, Any] = {"stan": args.stan}
    if pan is not None:
        fields["pan"] = pan
    if txn_type in ("refund", "reversal"):
        # No PIN: a refund is the merchant's act, a reversal the terminal's own.
        if txn_type == "refund":
            fields["original_rrn"] = args.original_rrn
        else:
            fields["original_stan"] = args.original_stan
        if args.amount is not None:
            fields["amount"] = args.amount
        return fields
    if pan is None:
        raise ValueError("give --card (with --demo) or --pan")
    if txn_type == "settlement_trial":
        pin = getattr(args, "pin", None)  # a trial carries a PIN only when asked to
    if pin is not None:
        fields["pin"] = pin
    if txn_type != "balance_inquiry":
        fields["amount"] = args.amount
    if getattr(args, "items", None) is not None:
        fields["items"] = args.items
        if args.amount is None:
            fields["amount"] = items_total(args.items)
        if args.account_max is not None:
            fields["account_max"] = args.account_max
    elif fields.get("amount", 0) is None:
        raise ValueError("give the amount (or --items)")
    return fields


def iso_address(args: argparse.Namespace) -> tuple[str, int] | None:
    """(host, port) of the ISO 8583 listener when the command speaks it, else None."""
    if getattr(args, "protocol", "iso8583") != "iso8583":
        return None
    if not args.iso_port:
        raise ValueError("ISO 8583 needs --iso-port PORT (the gateway's serve --iso-port)")
    return urlsplit(args.url).hostname or "127.0.0.1", args.iso_port


def _show(args: argparse.Namespace) -> Callable[[str], None] | None:
    return (lambda text: print(text, flush=True)) if getattr(args, "show_fields", False) else None


@contextlib.asynccontextmanager
async def _open_terminal(
    args: argparse.Namespace, config: TerminalConfig
) -> AsyncIterator[Terminal | IsoTerminal]:
    """The terminal over the protocol the command asked for."""
    address = iso_address(args)
    if address is not None:
        terminal = IsoTerminal(IsoConnection(*address), config, show=_show(args))
        try:
            yield terminal
        finally:
            await terminal.close()
        return
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Terminal(session, args.url, config)


async def _network(args: argparse.Namespace) -> int:
    world = DemoWorld.load(args.demo) if args.demo else None
    config = _resolve_terminal(args, world)
    async with _open_terminal(args, config) as terminal:
        assert isinstance(terminal, IsoTerminal)
        answer = await terminal.network(NETWORK_COMMANDS[args.command])
    code = answer.get("39", "")
    if args.json:
        print(json.dumps({k: v for k, v in answer.items() if k not in ("64", "128")}))
    elif not args.show_fields:
        print(describe_fields(answer))
    ok = code == "00" and "mac" not in answer
    if "mac" in answer:
        print("terminal-sim: the answer's MAC is wrong or missing", file=sys.stderr)
    return 0 if ok else 1


async def _single(args: argparse.Namespace) -> int:
    world = DemoWorld.load(args.demo) if args.demo else None
    config = _resolve_terminal(args, world)
    fields = _transaction_fields(args, world)
    async with _open_terminal(args, config) as terminal:
        body, answer = await terminal.transact(TRANSACTION_COMMANDS[args.command], **fields)
    if args.json:
        print(json.dumps(answer.body))
    else:
        print(f"-> {describe_request(body)}")
        print(render_answer(answer))
    return 0 if answer.status == 200 else 1


def render_answer(answer: Answer) -> str:
    body = answer.body
    if "error" in body:
        return _render_error(answer)
    parts = [f"<- {body.get('response_code')} {body.get('message')}"]
    for key in ("amount", "balance"):
        if isinstance(body.get(key), int):
            parts.append(f"{key} {format_amount(body[key])} CNY")
    for key in ("stan", "rrn", "auth_code"):
        if key in body:
            parts.append(f"{key} {body[key]}")
    if isinstance(body.get("split"), dict):
        return "  ".join(parts) + "\n" + render_split(body["split"])
    return "  ".join(parts)


def _render_error(answer: Answer) -> str:
    error = answer.body.get("error") or {}
    return f"<- HTTP {answer.status}: {error.get('code')}: {error.get('message')}"


def _figures_text(figures: dict[str, Any]) -> str:
    return f"{figures['count']} for {format_amount(figures['amount'])} CNY"


def render_batch_close(answer: Answer) -> str:
    body = answer.body
    if answer.status != 200 or "in_balance" not in body:
        return _render_error(answer)
    verdict = "in balance" if body["in_balance"] else "OUT OF BALANCE"
    lines = [f"<- batch {body['batch_no']} closed, {verdict}; next batch {body['next_batch_no']}"]
    lines.append(f"   {'':10} {'terminal':>24} {'gateway':>24}")
    for part in ("purchases", "refunds"):
        ours, theirs = body["terminal"][part], body["gateway"][part]
        mark = "" if ours == theirs else "   <- differs"
        lines.append(f"   {part:10} {_figures_text(ours):>24} {_figures_text(theirs):>24}{mark}")
    return "\n".join(lines)


async def _close_batch(args: argparse.Namespace) -> int:
    world = DemoWorld.load(args.demo) if args.demo else None
    config = _resolve_terminal(args, world)
    async with _open_terminal(args, config) as terminal:
        batch_no = args.batch_no
        if batch_no is None:
            open_batch = await terminal.open_batch()
            if open_batch.status != 200 or not isinstance(open_batch.body.get("batch_no"), int):
                print(_render_error(open_batch))
                return 1
            batch_no = open_batch.body["batch_no"]
        body, answer = await terminal.close_batch(batch_no, args.purchases, args.refunds)
    if args.json:
        print(json.dumps(answer.body))
    else:
        print(
            f"-> close batch {body['batch_no']}: purchases {_figures_text(body['purchases'])}, "
            f"refunds {_figures_text(body['refunds'])}"
        )
        print(render_batch_close(answer))
    return 0 if answer.status == 200 and answer.body.get("in_balance") is True else 1


async def _load(args: argparse.Namespace) -> int:
    world = DemoWorld.load(args.demo)
    config = LoadConfig(
        url=args.url,
        terminals=args.terminals,
        duration_s=args.duration,
        rate=args.rate,
        mix=args.mix,
        amount_fen=args.amount,
        timeout_s=args.timeout,
        seed=args.seed,
        iso=iso_address(args),
        itemised_share=args.itemised_share,
        prepare_ahead=args.prepare_ahead,
    )
    console = Console()
    report = await run_load(config, world, progress=sys.stdout.isatty() and not args.quiet)
    console.print(render_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["answered"] else 1


async def _scenario(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.file)
    world = DemoWorld.load(args.demo)
    results = await run_scenario(scenario, world, args.url, iso=iso_address(args), show=_show(args))
    return 0 if all(r.ok for r in results) else 1


async def _wait(url: str, timeout_s: float) -> int:
    if await wait_healthy(url, timeout_s):
        return 0
    print(f"terminal-sim: gateway at {url} not healthy after {timeout_s:.0f} s", file=sys.stderr)
    return 1


async def _bench(args: argparse.Namespace) -> int:
    from terminal_sim.bench import BenchConfig, render_summary, run_bench

    config = BenchConfig(
        duration_s=args.duration,
        terminals=args.terminals,
        workers=args.workers,
        cards=args.cards,
        port=args.port,
        out_dir=args.out_dir,
        protocol=args.protocol,
        log_level=args.log_level,
    )
    if args.scale:
        return await _bench_scale(args, config)
    results = await run_bench(config, say=lambda text: print(f"bench: {text}", flush=True))
    print()
    print(render_summary(results))
    files = results["files"]
    print(f"\nfigures: {files['json']}")
    print(f"chart:   {files['chart'] or 'not drawn (pip install matplotlib, or make bench)'}")
    return 0


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are N,N,...: not {text!r}") from None
    if not sizes or any(not 1 <= n <= 10**8 for n in sizes) or list(sizes) != sorted(set(sizes)):
        raise argparse.ArgumentTypeError("sizes must be increasing, each 1..100000000")
    return sizes


async def _bench_scale(args: argparse.Namespace, config: Any) -> int:
    from terminal_sim.scale import ScaleConfig, render_scale, run_scale

    scale = ScaleConfig(
        sizes=args.scale_sizes,
        journal_per_card=args.scale_journal_per_card,
        statement_entries=args.scale_statement,
    )
    results = await run_scale(config, scale, say=lambda text: print(f"scale: {text}", flush=True))
    print()
    print(render_scale(results))
    files = results["files"]
    print(f"\nfigures: {files['json']}")
    print(f"chart:   {files['chart'] or 'not drawn (pip install matplotlib, or make bench)'}")
    return 0
