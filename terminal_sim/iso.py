"""Terminal side of DESIGN §9: ISO 8583 over TCP (pyiso8583, AES-CMAC), the client's own
copy of the spec: terminal_sim imports nothing from the gateway.

`IsoTerminal` offers what `client.Terminal` offers (transaction_body, send, transact,
close_batch, open_batch), taking and giving the JSON protocol's shapes, so scenarios and
load tests run unchanged over either transport; sign_on, sign_off and echo are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import iso8583
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from iso8583.specs import default as _default_spec

from terminal_sim.client import Answer, TerminalConfig, build_transaction_body
from terminal_sim.protocol import StanCounter, mask_pan

MAC_BYTES = 8
MAX_MESSAGE_BYTES = 2048
CURRENCY_NUMERIC = "156"
PROCESSING_CODES = {
    "purchase": "000000",
    "balance_inquiry": "310000",
    "refund": "200000",
    "cash_withdrawal": "010000",
    "transfer": "400000",
}
SIGN_ON, SIGN_OFF, ECHO = "001", "002", "301"
# Meanings of field 39, for printing (DESIGN §4 and §9).
MESSAGES = {
    "00": "Approved", "03": "Merchant not designated", "12": "Invalid transaction",
    "13": "Invalid amount", "14": "Invalid card number", "30": "Format error",
    "41": "Lost card", "51": "Insufficient funds", "54": "Expired card",
    "55": "Incorrect PIN", "57": "Not permitted to cardholder", "62": "Restricted card",
    "63": "Security violation", "75": "PIN tries exceeded", "91": "Issuer unavailable",
    "94": "Duplicate transmission", "95": "Reconcile error", "96": "System malfunction",
}  # fmt: skip
FIELD_NAMES = {
    "2": "PAN", "3": "processing code", "4": "amount", "11": "STAN", "12": "local time",
    "13": "local date", "37": "RRN", "38": "auth code", "39": "response code",
    "41": "terminal", "49": "currency", "52": "PIN block", "54": "balance",
    "60": "batch", "64": "MAC", "70": "network code", "74": "refunds count",
    "76": "purchases count", "86": "refunds amount", "88": "purchases amount",
    "90": "original data", "128": "MAC",
}  # fmt: skip


def _spec() -> dict[str, dict[str, Any]]:
    spec = copy.deepcopy(_default_spec)
    spec["52"] = {**spec["52"], "max_len": 16}
    spec["64"] = {**spec["64"], "max_len": MAC_BYTES}
    spec["128"] = {**spec["128"], "max_len": MAC_BYTES}
    return spec


SPEC = _spec()


class IsoConnectionLost(ConnectionError):
    """The gateway closed the connection (or it broke) before the answer came."""


def cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def encode(fields: dict[str, str], mac_key: bytes | None) -> bytes:
    """Encode; with a key, the MAC (first 8 bytes of AES-CMAC over everything before it)
    goes in 128 when there is a secondary bitmap, else in 64."""
    doc = {k: v for k, v in fields.items() if k not in ("p", "1", "64", "128")}
    if mac_key is not None:
        secondary = any(k.isdigit() and 64 < int(k) < 128 for k in doc)
        doc["128" if secondary else "64"] = "00" * MAC_BYTES
    raw, _ = iso8583.encode(doc, SPEC)
    if mac_key is not None:
        raw[-MAC_BYTES:] = cmac(mac_key, bytes(raw[:-MAC_BYTES]))[:MAC_BYTES]
    return bytes(raw)


def decode(raw: bytes) -> dict[str, str]:
    fields, _ = iso8583.decode(raw, SPEC)
    return fields


def mac_ok(raw: bytes, fields: dict[str, str], mac_key: bytes) -> bool:
    if "64" not in fields and "128" not in fields:
        return False
    return hmac.compare_digest(cmac(mac_key, raw[:-MAC_BYTES])[:MAC_BYTES], raw[-MAC_BYTES:])


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def describe_fields(fields: dict[str, str]) -> str:
    """One line per field, PAN masked, PIN block and MAC elided."""
    lines = [f"MTI {fields.get('t', '?')}"]
    for name in sorted((k for k in fields if k.isdigit() and k != "1"), key=int):
        value = fields[name]
        if name == "2":
            value = mask_pan(value)
        elif name == "52":
            value = "<PIN block>"
        elif name in ("64", "128"):
            value = "<MAC>"
        label = FIELD_NAMES.get(name, "")
        lines.append(f"  {name:>3} {label:<17} {value}")
    return "\n".join(lines)


def iso_to_answer(fields: dict[str, str]) -> dict[str, Any]:
    """An 0210/0410 as the JSON protocol's business answer."""
    code = fields.get("39", "")
    out: dict[str, Any] = {
        "response_code": code,
        "approved": code == "00",
        "message": MESSAGES.get(code, "Unknown"),
    }
    if "11" in fields:
        out["stan"] = fields["11"]
    if "37" in fields:
        out["rrn"] = fields["37"]
    if "38" in fields:
        out["auth_code"] = fields["38"]
    if "4" in fields:
        out["amount"] = int(fields["4"])
    block = fields.get("54", "")
    if len(block) == 20 and block[7] in "CD":
        out["balance"] = int(block[8:]) * (1 if block[7] == "C" else -1)
    return out


def _refused(code: str | None) -> Answer:
    """A refused batch request, shaped like the JSON protocol's 409."""
    message = MESSAGES.get(code or "", "refused")
    return Answer(409, {"error": {"code": f"response_code_{code}", "message": message}})


class IsoConnection:
    """One TCP connection to the gateway's ISO listener; requests may be pipelined, each
    answer is matched to its request by fields 11 and 41."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[tuple[str, str], asyncio.Future[tuple[dict[str, str], bytes]]] = {}
        self._reading: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _ensure_open(self) -> asyncio.StreamWriter:
        async with self._lock:
            if self._writer is None or self._writer.is_closing():
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                self._reading = asyncio.create_task(self._read_loop(self._reader))
            return self._writer

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        error: Exception = IsoConnectionLost("the gateway closed the connection")
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                raw = await reader.readexactly(length)
                fields = decode(raw)
                future = self._pending.pop((fields.get("11", ""), fields.get("41", "")), None)
                if future is not None and not future.done():
                    future.set_result((fields, raw))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except iso8583.DecodeError as exc:
            error = IsoConnectionLost(f"undecodable answer: {exc}")
        finally:
            if self._writer is not None:
                self._writer.close()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()

    async def request(
        self, message: bytes, stan: str, terminal_id: str, timeout_s: float
    ) -> tuple[dict[str, str], bytes]:
        """Send one framed message; its answer's fields and bytes."""
        writer = await self._ensure_open()
        key = (stan, terminal_id)
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            writer.write(frame(message))
            await writer.drain()
            return await asyncio.wait_for(future, timeout_s)
        except (ConnectionError, OSError) as exc:
            raise IsoConnectionLost(str(exc)) from None
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]

    async def closed_by_peer(self, timeout_s: float) -> bool:
        """Whether the gateway has closed this connection, or does within `timeout_s`."""
        if self._reading is None:
            return False
        done, _ = await asyncio.wait({self._reading}, timeout=timeout_s)
        return bool(done)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading


class IsoTerminal:
    """A terminal speaking ISO 8583: same calls as client.Terminal."""

    def __init__(
        self,
        connection: IsoConnection,
        config: TerminalConfig,
        stans: StanCounter | None = None,
        *,
        timeout_s: float = 30.0,
        show: Callable[[str], None] | None = None,
    ) -> None:
        self.connection = connection
        self.config = config
        self.stans = stans or StanCounter()
        self.timeout_s = timeout_s
        self.show = show
        # STAN -> (processing code, MMDDhhmmss) of requests sent, for a reversal's 90.
        self._sent: dict[str, tuple[str, str]] = {}

    def transaction_body(self, txn_type: str, **fields: Any) -> dict[str, Any]:
        return build_transaction_body(self.config, self.stans, txn_type, **fields)

    async def exchange(self, fields: dict[str, str]) -> dict[str, str]:
        """Send a request (MACed), return the answer's fields; an answer whose MAC is
        missing or wrong is shown as such (`mac` key), except a 63, which has none."""
        fields = {**fields, "41": self.config.terminal_id}
        if self.show:
            self.show("-> " + describe_fields(fields))
        message = encode(fields, self.config.mac_key)
        answer, raw = await self.connection.request(
            message, fields["11"], self.config.terminal_id, self.timeout_s
        )
        if self.show:
            self.show("<- " + describe_fields(answer))
        if answer.get("39") != "63" and not mac_ok(raw, answer, self.config.mac_key):
            answer = {**answer, "mac": "bad"}
        return answer

    def iso_fields(self, body: dict[str, Any]) -> dict[str, str]:
        """A JSON-protocol transaction body as the fields of an 0200 or 0400."""
        moment = datetime.fromisoformat(body["local_time"])
        mmdd, hhmmss = moment.strftime("%m%d"), moment.strftime("%H%M%S")
        txn_type = body["type"]
        fields: dict[str, str] = {"11": body["stan"], "12": hhmmss, "13": mmdd}
        if txn_type == "reversal":
            # An original this terminal did not send (another process): taken as a
            # purchase of the reversal's own date; the gateway looks it up by STAN.
            code, original_time = self._sent.get(body["original_stan"], ("000000", mmdd + "000000"))
            fields.update(
                {"t": "0400", "3": code, "90": f"0200{body['original_stan']}{original_time}"
                 + "0" * 22}
            )  # fmt: skip
        else:
            fields.update({"t": "0200", "3": PROCESSING_CODES[txn_type]})
            self._sent[body["stan"]] = (fields["3"], mmdd + hhmmss)
        if "pan" in body:
            fields["2"] = body["pan"]
        if "amount" in body:
            fields["4"] = f"{body['amount']:012d}"
            fields["49"] = CURRENCY_NUMERIC
        if "pin_block" in body:
            fields["52"] = body["pin_block"].upper()
        if "original_rrn" in body:
            fields["37"] = body["original_rrn"]
        return fields

    async def send(self, path: str, payload: dict[str, Any] | bytes) -> Answer:
        """A JSON-protocol body (dict or its bytes) sent as its ISO 8583 message; `path` is
        ignored (one listener takes every request)."""
        del path
        body = json.loads(payload) if isinstance(payload, bytes) else payload
        if len(self._sent) > 100_000:  # a long load run: forget the oldest STANs
            self._sent.clear()
        answer = await self.exchange(self.iso_fields(body))
        return Answer(status=200, body=iso_to_answer(answer))

    async def transact(self, txn_type: str, **fields: Any) -> tuple[dict[str, Any], Answer]:
        body = self.transaction_body(txn_type, **fields)
        return body, await self.send("", body)

    async def network(self, code: str) -> dict[str, str]:
        return await self.exchange({"t": "0800", "11": self.stans.next(), "70": code})

    async def sign_on(self) -> dict[str, str]:
        return await self.network(SIGN_ON)

    async def open_batch(self) -> Answer:
        """The open batch, from a sign-on's field 60."""
        answer = await self.sign_on()
        if answer.get("39") != "00" or not answer.get("60", "").isdigit():
            return _refused(answer.get("39"))
        return Answer(200, {"batch_no": int(answer["60"])})

    async def close_batch(
        self, batch_no: int, purchases: dict[str, int], refunds: dict[str, int]
    ) -> tuple[dict[str, Any], Answer]:
        body = {"batch_no": batch_no, "purchases": purchases, "refunds": refunds}
        answer = await self.exchange(
            {
                "t": "0500",
                "3": "920000",
                "11": self.stans.next(),
                "60": f"{batch_no:06d}",
                "74": f"{refunds['count']:010d}",
                "76": f"{purchases['count']:010d}",
                "86": f"{refunds['amount']:016d}",
                "88": f"{purchases['amount']:016d}",
            }
        )
        code = answer.get("39")
        if code not in ("00", "95"):
            return body, _refused(code)
        gateway = {
            "purchases": {"count": int(answer["76"]), "amount": int(answer["88"])},
            "refunds": {"count": int(answer["74"]), "amount": int(answer["86"])},
        }
        closed = int(answer["60"])
        return body, Answer(
            200,
            {
                "batch_no": closed,
                "in_balance": code == "00",
                "gateway": gateway,
                "terminal": {"purchases": purchases, "refunds": refunds},
                "next_batch_no": closed + 1,
            },
        )

    async def close(self) -> None:
        await self.connection.close()
