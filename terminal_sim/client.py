"""An async terminal: builds, signs and sends requests to the gateway."""

from __future__ import annotations

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

    def transaction_body(
        self,
        txn_type: str,
        *,
        pan: str | None = None,
        pin: str | None = None,
        amount: int | None = None,
        stan: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": txn_type,
            "stan": stan or self.stans.next(),
            "local_time": local_time(),
        }
        if pan is not None:
            body["pan"] = pan
        if pin is not None and pan is not None:
            body["pin_block"] = pin_block(self.config.pin_key, pin, pan)
        if amount is not None:
            body["amount"] = amount
            body["currency"] = "CNY"
        body.update(extra)
        return body

    async def send(self, path: str, payload: dict[str, Any] | bytes) -> Answer:
        body = payload if isinstance(payload, bytes) else encode_body(payload)
        headers = signed_headers(self.config.terminal_id, self.config.mac_key, "POST", path, body)
        async with self.session.post(self.base_url + path, data=body, headers=headers) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = {"error": {"code": "not_json", "message": (await resp.text())[:200]}}
            return Answer(status=resp.status, body=data)

    async def transact(self, txn_type: str, **fields: Any) -> tuple[dict[str, Any], Answer]:
        body = self.transaction_body(txn_type, **fields)
        return body, await self.send(TRANSACTIONS_PATH, body)
