"""terminal-sim: drive the gateway like a POS terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from terminal_sim.client import Answer, Terminal, TerminalConfig
from terminal_sim.demo import DemoLookupError, DemoWorld
from terminal_sim.protocol import format_amount, parse_amount
from terminal_sim.scenario import ScenarioError, describe_request, load_scenario, run_scenario

DEFAULT_URL = "http://127.0.0.1:8080"


def _terminal_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"gateway URL (default {DEFAULT_URL})")
    parser.add_argument("--demo", type=Path, help="demo JSON written by `pos-gateway demo-data`")
    parser.add_argument("--terminal", help="terminal id or alias in the demo file")
    parser.add_argument("--terminal-id", help="terminal id, with --mac-key and --pin-key")
    parser.add_argument("--mac-key", help="hex MAC key (instead of --demo)")
    parser.add_argument("--pin-key", help="hex AES-128 PIN key (instead of --demo)")
    parser.add_argument("--stan", help="system trace audit number (6 digits; default random)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")


def _card_args(parser: argparse.ArgumentParser, *, pin: bool) -> None:
    parser.add_argument("--card", help="card alias or PAN from the demo file")
    parser.add_argument("--pan", help="card number (instead of --card)")
    if pin:
        parser.add_argument("--pin", help="PIN (default: the card's PIN from the demo file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="terminal-sim",
        description="POS terminal simulator for the medical-insurance card gateway.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("purchase", help="pay for medicine with card and PIN")
    _terminal_args(p)
    _card_args(p, pin=True)
    p.add_argument("amount", help="amount in CNY, e.g. 12.50 (converted exactly to fen)")

    p = sub.add_parser("balance", help="balance inquiry (card and PIN)")
    _terminal_args(p)
    _card_args(p, pin=True)

    for kind in ("cash-withdrawal", "transfer"):
        p = sub.add_parser(kind, help=f"try a {kind.replace('-', ' ')} (always refused: 57)")
        _terminal_args(p)
        _card_args(p, pin=True)
        p.add_argument("amount", help="amount in CNY")

    p = sub.add_parser("scenario", help="run a scripted TOML scenario; non-zero exit on mismatch")
    p.add_argument("file", type=Path)
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--demo", type=Path, required=True)

    p = sub.add_parser("wait", help="wait until the gateway's /healthz answers 200")
    p.add_argument("--url", default=DEFAULT_URL)
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
        return asyncio.run(_single(args))
    except (ScenarioError, DemoLookupError, ValueError, OSError) as exc:
        print(f"terminal-sim: {exc}", file=sys.stderr)
        return 2
    except aiohttp.ClientError as exc:
        print(f"terminal-sim: cannot reach the gateway: {exc}", file=sys.stderr)
        return 3


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


def _resolve_card(args: argparse.Namespace, world: DemoWorld | None) -> tuple[str, str | None]:
    card = world.card(args.card) if (world and args.card) else None
    pan = args.pan or (card["pan"] if card else None)
    if pan is None:
        raise ValueError("give --card (with --demo) or --pan")
    pin = getattr(args, "pin", None) or (card["pin"] if card else None)
    return pan, pin


async def _single(args: argparse.Namespace) -> int:
    world = DemoWorld.load(args.demo) if args.demo else None
    config = _resolve_terminal(args, world)
    pan, pin = _resolve_card(args, world)
    txn_type = {"balance": "balance_inquiry"}.get(args.command, args.command.replace("-", "_"))
    fields: dict[str, Any] = {"pan": pan, "stan": args.stan}
    if pin is not None:
        fields["pin"] = pin
    if txn_type != "balance_inquiry":
        fields["amount"] = parse_amount(args.amount)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        terminal = Terminal(session, args.url, config)
        body, answer = await terminal.transact(txn_type, **fields)
    if args.json:
        print(json.dumps(answer.body))
    else:
        print(f"-> {describe_request(body)}")
        print(render_answer(answer))
    return 0 if answer.status == 200 else 1


def render_answer(answer: Answer) -> str:
    body = answer.body
    if "error" in body:
        return (
            f"<- HTTP {answer.status}: {body['error'].get('code')}: {body['error'].get('message')}"
        )
    parts = [f"<- {body.get('response_code')} {body.get('message')}"]
    for key in ("amount", "balance"):
        if isinstance(body.get(key), int):
            parts.append(f"{key} {format_amount(body[key])} CNY")
    for key in ("rrn", "auth_code"):
        if key in body:
            parts.append(f"{key} {body[key]}")
    return "  ".join(parts)


async def _scenario(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.file)
    world = DemoWorld.load(args.demo)
    results = await run_scenario(scenario, world, args.url)
    return 0 if all(r.ok for r in results) else 1


async def _wait(url: str, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url.rstrip("/") + "/healthz") as resp:
                    if resp.status == 200:
                        return 0
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    print(f"terminal-sim: gateway at {url} not healthy after {timeout_s:.0f} s", file=sys.stderr)
    return 1
