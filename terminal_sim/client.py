"""An async terminal: builds, signs and sends requests to the gateway."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from terminal_sim.protocol import (
    StanCounter,
    encode_body,
    local_time,
    pin_block,
    signed_headers,
)

TRANSACTIONS_PATH = "/v1/transactions"
BATCH_CLOSE_PATH = "/v1/batches/close"
OPEN_BATCH_PATH = "/v1/batches/open"


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    terminal_id: str
    mac_key: bytes = field(repr=False)
    pin_key: bytes = field(repr=False)

    @classmethod
    def from_demo(cls, entry: dict[str, Any]) -> TerminalConfig:
        return cls(
            terminal_id=entry["terminal_id"],
            mac_key=bytes.fromhex(entry["mac_key"]),
            pin_key=bytes.fromhex(entry["pin_key"]),
        )


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def response_code(self) -> str | None:
        return self.body.get("response_code")


def build_transaction_body(
    config: TerminalConfig,
    stans: StanCounter,
    txn_type: str,
    *,
    pan: str | None = None,
    pin: str | None = None,
    amount: int | None = None,
    stan: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A transaction in the JSON protocol's shape (the ISO terminal translates it)."""
    body: dict[str, Any] = {
        "type": txn_type,
        "stan": stan or stans.next(),
        "local_time": local_time(),
    }
    if pan is not None:
        body["pan"] = pan
    if pin is not None and pan is not None:
        body["pin_block"] = pin_block(config.pin_key, pin, pan)
    if amount is not None:
        body["amount"] = amount
        body["currency"] = "CNY"
    body.update(extra)
    return body


class Terminal:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        config: TerminalConfig,
        stans: StanCounter | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.config = config
        self.stans = stans or StanCounter()

    def transaction_body(self, txn_type: str, **fields: Any) -> dict[str, Any]:
        return build_transaction_body(self.config, self.stans, txn_type, **fields)

    async def send(self, path: str, payload: dict[str, Any] | bytes) -> Answer:
        """POST a signed JSON body (bytes are sent as they are: a retransmission)."""
        body = payload if isinstance(payload, bytes) else encode_body(payload)
        return await self._signed("POST", path, body)

    async def _signed(self, method: str, path: str, body: bytes) -> Answer:
        headers = signed_headers(self.config.terminal_id, self.config.mac_key, method, path, body)
        async with self.session.request(
            method, self.base_url + path, data=body or None, headers=headers
        ) as resp:
            text = await resp.text(errors="replace")
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {"error": {"code": "not_json", "message": text[:200]}}
        return Answer(status=resp.status, body=data)

    async def transact(self, txn_type: str, **fields: Any) -> tuple[dict[str, Any], Answer]:
        body = self.transaction_body(txn_type, **fields)
        return body, await self.send(TRANSACTIONS_PATH, body)

    async def close_batch(
        self, batch_no: int, purchases: dict[str, int], refunds: dict[str, int]
    ) -> tuple[dict[str, Any], Answer]:
        """Send the terminal's counts and totals (fen) of approved purchases and refunds."""
        body = {"batch_no": batch_no, "purchases": purchases, "refunds": refunds}
        return body, await self.send(BATCH_CLOSE_PATH, body)

    async def open_batch(self) -> Answer:
        """Ask which batch is open: {"batch_no": N}, for a terminal that lost its count."""
        return await self._signed("GET", OPEN_BATCH_PATH, b"")


async def wait_healthy(
    url: str, timeout_s: float, still_starting: Callable[[], bool] = lambda: True
) -> bool:
    """Poll GET /healthz until it answers 200 (True), `timeout_s` passes, or
    `still_starting()` says the gateway process is gone (False)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline and still_starting():
            try:
                async with session.get(url.rstrip("/") + "/healthz") as resp:
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    return False
