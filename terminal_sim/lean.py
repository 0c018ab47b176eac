"""Lean clients for the load generator: keep-alive HTTP/1.1 and ISO 8583.

aiohttp's client costs the generator about as much CPU per request as a third of the
gateway's; the bench needs the generator at most a fifth of the gateway (issue 13), so the
load runs speak HTTP/1.1 themselves: one request per connection at a time, connections
kept alive and reused, the answer read by its Content-Length. Signing and bodies are
the terminal's own (terminal_sim.client.Terminal); only the transport differs.

Both clients split a request in two: `wire(body)` makes its bytes (signed or MACed), which
the load run may do before the run starts, and `send_wire` sends them. Over ISO 8583 the
answers are read by `answer_fields`, which takes only the text fields and leaves the
answer's MAC unchecked: the load run counts response codes; scenarios and single
commands, which check MACs, use terminal_sim.iso.IsoTerminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
IDLE_CONNECTIONS = 64  # kept per terminal: the open model has several in flight at once


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


class LeanTerminal(Terminal):
    """A Terminal whose requests go over its own keep-alive connections.

    A connection that closes before the whole answer has come raises
    aiohttp.ServerDisconnectedError, as aiohttp's client would: the request may have been
    processed, so the load run reverses it."""

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
        self._idle: list[_Connection] = []

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

    async def send_wire(self, wire: bytes, stan: str = "") -> Answer:
        """Send a request made by `wire` and read its answer."""
        del stan  # one request per connection at a time: the answer is the request's
        conn = self._idle.pop() if self._idle else None
        try:
            async with asyncio.timeout(self._timeout_s):
                if conn is None:
                    conn = _Connection(*await asyncio.open_connection(self._host, self._port))
                conn.writer.write(wire)
                status, data, keep = await _read_answer(conn.reader)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if keep and len(self._idle) < IDLE_CONNECTIONS:
            self._idle.append(conn)
        else:
            conn.close()
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            text = data[:200].decode(errors="replace")
            parsed = {"error": {"code": "not_json", "message": text}}
        return Answer(status=status, body=parsed)

    async def aclose(self) -> None:
        while self._idle:
            conn = self._idle.pop()
            conn.close()
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 answer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")  # one call for the whole head
    except asyncio.LimitOverrunError:
        raise aiohttp.ClientPayloadError("an answer's head is too long") from None
    except (asyncio.IncompleteReadError, ConnectionError):
        raise aiohttp.ServerDisconnectedError() from None
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
        elif name == b"connection":
            keep = value.strip().lower() == b"keep-alive"
    try:
        if length is None:  # no length: the body runs to the end of the connection
            data = await reader.read(-1)
            if len(data) > MAX_ANSWER_BYTES:
                raise aiohttp.ClientPayloadError(f"an answer of {len(data)} bytes")
            return status, data, False
        if length > MAX_ANSWER_BYTES:
            raise aiohttp.ClientPayloadError(f"an answer of {length} bytes")
        return status, await reader.readexactly(length), keep
    except (asyncio.IncompleteReadError, ConnectionError):
        raise aiohttp.ServerDisconnectedError() from None


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


class _IsoProtocol(asyncio.Protocol):
    """One connection to the ISO 8583 listener: framed answers, each handed to the
    request waiting for its STAN (requests are pipelined in the open model)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: dict[str, asyncio.Future[dict[str, str]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

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
            future = self.pending.pop(fields.get("11", ""), None)
            if future is not None and not future.done():
                future.set_result(fields)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(IsoConnectionLost(str(exc) if exc else "the gateway closed the connection"))

    def _fail(self, error: Exception) -> None:
        if self.transport is not None:
            self.transport.close()
        self.transport = None
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()


def _time_out(future: asyncio.Future[dict[str, str]]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


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
        self._protocol: _IsoProtocol | None = None
        self._opening: asyncio.Lock | None = None

    def wire(self, body: dict[str, Any], path: str = TRANSACTIONS_PATH) -> bytes:
        """The framed, MACed 0200 or 0400 of a JSON-protocol body (the times in it are
        the body's: the gateway checks only that field 13 is a date)."""
        del path
        if len(self._sent) > 100_000:  # a long load run: forget the oldest STANs
            self._sent.clear()
        fields = {**self.iso_fields(body), "41": self.config.terminal_id}
        return frame(encode(fields, self.config.mac_key))

    async def _connected(self) -> _IsoProtocol:
        if self._protocol is not None and self._protocol.transport is not None:
            return self._protocol
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._protocol is None or self._protocol.transport is None:
                loop = asyncio.get_running_loop()
                _, protocol = await loop.create_connection(_IsoProtocol, *self._address)
                self._protocol = protocol
            return self._protocol

    async def send_wire(self, wire: bytes, stan: str) -> Answer:
        """Send a message made by `wire` (STAN `stan`); its answer as the JSON protocol's.
        TimeoutError after the timeout; IsoConnectionLost if the connection breaks."""
        try:
            protocol = await self._connected()
        except OSError as exc:
            raise IsoConnectionLost(str(exc)) from None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, str]] = loop.create_future()
        protocol.pending[stan] = future
        timer = loop.call_later(self.timeout_s, _time_out, future)
        try:
            if protocol.transport is None:
                raise IsoConnectionLost("the gateway closed the connection")
            protocol.transport.write(wire)
            fields = await future
        finally:
            timer.cancel()
            if protocol.pending.get(stan) is future:
                del protocol.pending[stan]
        return Answer(status=200, body=iso_to_answer(fields))

    async def send(self, path: str, payload: dict[str, Any] | bytes) -> Answer:
        body = json.loads(payload) if isinstance(payload, bytes) else payload
        return await self.send_wire(self.wire(body, path), body["stan"])

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
