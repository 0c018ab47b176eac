"""Lean clients for the load generator: keep-alive HTTP/1.1 and ISO 8583.

aiohttp's client costs the generator about as much CPU per request as a third of the
gateway's; the bench needs the generator at most a fifth of the gateway (issue 13), so the
load runs speak HTTP/1.1 themselves: one request per connection at a time, connections
kept alive and reused, the answer read by its Content-Length. Signing and bodies are
the terminal's own (terminal_sim.client.Terminal); only the transport differs.

Both clients split a request in two: `wire(body)` makes its bytes (signed or MACed), which
the load run may do before the run starts, and sending them. `start` sends on a
connection that is already open and calls back with the answer (or the error) from the
connection's own data callback: no task, no coroutine, so a request costs the generator
few passes of the event loop; `send_wire` is the same awaited, opening a connection
first if none is free. Over ISO 8583 the answers are read by `answer_fields`, which takes
only the text fields and leaves the answer's MAC unchecked: the load run counts response
codes; scenarios and single commands, which check MACs, use terminal_sim.iso.IsoTerminal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from yarl import URL

from terminal_sim.client import TRANSACTIONS_PATH, Answer, Terminal, TerminalConfig
from terminal_sim.iso import (
    SPEC,
    IsoConnection,
    IsoConnectionLost,
    IsoTerminal,
    encode,
    frame,
    iso_to_answer,
)
from terminal_sim.protocol import StanCounter, encode_body, signed_headers

MAX_ANSWER_BYTES = 1 << 20
MAX_HEAD_BYTES = 1 << 16
IDLE_CONNECTIONS = 64  # kept per terminal: the open model has several in flight at once

# Called once per request, from the event loop: the answer, or the error instead of it
# (TimeoutError; aiohttp.ServerDisconnectedError or IsoConnectionLost when the connection
# broke before the answer, so the request may have been processed).
Done = Callable[[Answer | BaseException], None]


def _answer(status: int, data: bytes) -> Answer:
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        text = data[:200].decode(errors="replace")
        parsed = {"error": {"code": "not_json", "message": text}}
    return Answer(status=status, body=parsed)


def parse_head(head: bytes) -> tuple[int, int | None, bool]:
    """(status, Content-Length or None, keep-alive) of an HTTP/1.1 answer's head (up to,
    not including, the blank line)."""
    status_line, *lines = head.split(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise aiohttp.ClientPayloadError(f"not an HTTP answer: {status_line[:80]!r}")
    status, length, keep = int(parts[1]), None, parts[0] == b"HTTP/1.1"
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            if not value.strip().isdigit():
                raise aiohttp.ClientPayloadError(f"bad Content-Length {value[:20]!r}")
            length = int(value.strip())
            if length > MAX_ANSWER_BYTES:
                raise aiohttp.ClientPayloadError(f"an answer of {length} bytes")
        elif name == b"connection":
            keep = value.strip().lower() == b"keep-alive"
        elif name == b"transfer-encoding":
            raise aiohttp.ClientPayloadError("a chunked answer")
    return status, length, keep


class _HttpConnection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer to `done`."""

    def __init__(self, owner: LeanTerminal) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.done: Done | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.head: tuple[int, int | None, bool] | None = None  # of the answer being read
        self.body_at = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def start(self, wire: bytes, done: Done, timeout_s: float) -> None:
        assert self.transport is not None and self.done is None
        self.done = done
        self.timer = asyncio.get_running_loop().call_later(timeout_s, self._time_out)
        self.transport.write(wire)

    def data_received(self, data: bytes) -> None:
        if self.done is None:  # nothing asked: the connection is out of step
            self._close()
            return
        buffer = self.buffer
        buffer += data
        try:
            if self.head is None:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise aiohttp.ClientPayloadError("an answer's head is too long")
                    return
                self.head = parse_head(bytes(buffer[:end]))
                self.body_at = end + 4
            status, length, keep = self.head
            if length is None:  # no length: the body runs to the end of the connection
                if len(buffer) - self.body_at > MAX_ANSWER_BYTES:
                    raise aiohttp.ClientPayloadError("an answer of more than 1 MiB")
                return
            if len(buffer) - self.body_at < length:
                return
            if len(buffer) - self.body_at > length:
                raise aiohttp.ClientPayloadError("bytes after the answer")
        except aiohttp.ClientPayloadError as exc:
            self._close()
            self._finish(exc, reuse=False)
            return
        answer = _answer(status, bytes(buffer[self.body_at :]))
        self._finish(answer, reuse=keep)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.done is None:
            return
        if self.head is not None and self.head[1] is None:
            self._finish(_answer(self.head[0], bytes(self.buffer[self.body_at :])), reuse=False)
        else:
            self._finish(aiohttp.ServerDisconnectedError(), reuse=False)

    def _time_out(self) -> None:
        self.timer = None
        self._close()
        self._finish(TimeoutError(), reuse=False)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def _finish(self, result: Answer | BaseException, reuse: bool) -> None:
        done, self.done = self.done, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.buffer.clear()
        self.head = None
        if reuse and self.usable and len(self.owner.idle) < IDLE_CONNECTIONS:
            self.owner.idle.append(self)
        else:
            self._close()
        if done is not None:
            done(result)


class LeanTerminal(Terminal):
    """A Terminal whose requests go over its own keep-alive connections."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        config: TerminalConfig,
        stans: StanCounter | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__(session, base_url, config, stans)
        url = URL(self.base_url)
        if url.scheme != "http" or url.host is None:
            raise ValueError(f"the lean client speaks plain http only: {base_url}")
        self._host, self._port = url.host, url.port or 80
        self._prefix = url.path.rstrip("/")
        self._host_header = f"Host: {url.host}:{self._port}\r\n"
        self._timeout_s = timeout_s
        self.idle: list[_HttpConnection] = []

    def wire(self, body: dict[str, Any], path: str = TRANSACTIONS_PATH) -> bytes:
        """A POST of `body` as it goes on the connection, signed now: good for the
        gateway's timestamp window (300 s by default)."""
        return self._request_bytes("POST", path, encode_body(body))

    def _request_bytes(self, method: str, path: str, body: bytes) -> bytes:
        headers = signed_headers(self.config.terminal_id, self.config.mac_key, method, path, body)
        head = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._host_header}"
            f"Content-Length: {len(body)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        )
        return head.encode() + body

    async def _signed(self, method: str, path: str, body: bytes) -> Answer:
        return await self.send_wire(self._request_bytes(method, path, body))

    def start(self, wire: bytes, stan: str, done: Done) -> bool:
        """Send on a free open connection, answer to `done`; False (nothing sent) if
        there is none."""
        del stan  # one request per connection at a time: the answer is the request's
        while self.idle:
            conn = self.idle.pop()
            if conn.usable:
                conn.start(wire, done, self._timeout_s)
                return True
        return False

    async def send_wire(self, wire: bytes, stan: str = "") -> Answer:
        """Send a request made by `wire` and await its answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        done = _resolver(future)
        if not self.start(wire, stan, done):
            async with asyncio.timeout(self._timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _HttpConnection(self), self._host, self._port
                )
            conn.start(wire, done, self._timeout_s)
        return await future

    async def aclose(self) -> None:
        while self.idle:
            self.idle.pop()._close()


def _resolver(future: asyncio.Future[Answer]) -> Done:
    def done(result: Answer | BaseException) -> None:
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    return done


# Field number -> (length digits (0: fixed), length, binary) from the spec both ends share.
_LAYOUT = {
    int(name): (spec["len_type"], spec["max_len"], spec["data_enc"] == "b")
    for name, spec in SPEC.items()
    if name.isdigit()
}


def answer_fields(raw: bytes) -> dict[str, str]:
    """The text fields of one ISO 8583 message (binary ones, PIN block and MAC, are left
    out), by walking its bitmap: a few times cheaper than iso8583.decode, and the same
    fields. ValueError if the message does not parse to its last byte."""
    if len(raw) < 12:
        raise ValueError("shorter than an MTI and a bitmap")
    fields = {"t": raw[:4].decode("ascii")}
    bits, position, count = int.from_bytes(raw[4:12], "big"), 12, 64
    if bits >> 63:  # a secondary bitmap
        bits = bits << 64 | int.from_bytes(raw[12:20], "big")
        position, count = 20, 128
    for number in range(2, count + 1):
        if not bits >> (count - number) & 1:
            continue
        digits, length, binary = _LAYOUT[number]
        if digits:
            length = int(raw[position : position + digits])
            position += digits
        end = position + length
        if end > len(raw):
            raise ValueError(f"field {number} runs past the end")
        if not binary:
            fields[str(number)] = raw[position:end].decode("ascii")
        position = end
    if position != len(raw):
        raise ValueError(f"{len(raw) - position} bytes after the last field")
    return fields


class _IsoConnection(asyncio.Protocol):
    """One connection to the ISO 8583 listener: framed answers, each handed to the
    request waiting for its STAN (requests are pipelined in the open model)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: dict[str, tuple[Done, asyncio.TimerHandle]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def start(self, wire: bytes, stan: str, done: Done, timeout_s: float) -> None:
        assert self.transport is not None
        timer = asyncio.get_running_loop().call_later(timeout_s, self._time_out, stan)
        self.pending[stan] = (done, timer)
        self.transport.write(wire)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            end = 2 + int.from_bytes(buffer[:2], "big")
            if len(buffer) < end:
                return
            raw = bytes(buffer[2:end])
            del buffer[:end]
            try:
                fields = answer_fields(raw)
            except (ValueError, KeyError) as exc:
                self._fail(IsoConnectionLost(f"undecodable answer: {exc}"))
                return
            entry = self.pending.pop(fields.get("11", ""), None)
            if entry is not None:
                done, timer = entry
                timer.cancel()
                done(Answer(status=200, body=iso_to_answer(fields)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(IsoConnectionLost(str(exc) if exc else "the gateway closed the connection"))

    def _time_out(self, stan: str) -> None:
        entry = self.pending.pop(stan, None)
        if entry is not None:
            entry[0](TimeoutError())

    def _fail(self, error: Exception) -> None:
        if self.transport is not None:
            self.transport.close()
        self.transport = None
        pending, self.pending = self.pending, {}
        for done, timer in pending.values():
            timer.cancel()
            done(error)


class LeanIsoTerminal(IsoTerminal):
    """An IsoTerminal for load runs: one connection, pipelined, answers read by
    `answer_fields` (no MAC check), requests made ahead by `wire`."""

    def __init__(
        self,
        host: str,
        port: int,
        config: TerminalConfig,
        stans: StanCounter | None = None,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__(IsoConnection(host, port), config, stans, timeout_s=timeout_s)
        self._address = (host, port)
        self._conn: _IsoConnection | None = None
        self._opening: asyncio.Lock | None = None

    def wire(self, body: dict[str, Any], path: str = TRANSACTIONS_PATH) -> bytes:
        """The framed, MACed 0200 or 0400 of a JSON-protocol body (the times in it are
        the body's: the gateway checks only that field 13 is a date)."""
        del path
        if len(self._sent) > 100_000:  # a long load run: forget the oldest STANs
            self._sent.clear()
        fields = {**self.iso_fields(body), "41": self.config.terminal_id}
        return frame(encode(fields, self.config.mac_key))

    def start(self, wire: bytes, stan: str, done: Done) -> bool:
        """Send on the open connection, answer to `done`; False (nothing sent) if the
        connection is not open."""
        conn = self._conn
        if conn is None or not conn.usable:
            return False
        conn.start(wire, stan, done, self.timeout_s)
        return True

    async def _connected(self) -> _IsoConnection:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._conn is None or not self._conn.usable:
                loop = asyncio.get_running_loop()
                _, self._conn = await loop.create_connection(_IsoConnection, *self._address)
            return self._conn

    async def send_wire(self, wire: bytes, stan: str) -> Answer:
        """Send a message made by `wire` (STAN `stan`); its answer as the JSON protocol's.
        TimeoutError after the timeout; IsoConnectionLost if the connection breaks."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        done = _resolver(future)
        if not self.start(wire, stan, done):
            conn = await self._connected()
            conn.start(wire, stan, done, self.timeout_s)
        return await future

    async def send(self, path: str, payload: dict[str, Any] | bytes) -> Answer:
        body = json.loads(payload) if isinstance(payload, bytes) else payload
        return await self.send_wire(self.wire(body, path), body["stan"])

    async def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None
