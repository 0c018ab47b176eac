"""A lean keep-alive HTTP/1.1 client for the load generator.

aiohttp's client costs the generator about as much CPU per request as a third of the
gateway's; the bench needs the generator at most a fifth of the gateway (issue 13), so the
load runs speak HTTP/1.1 themselves: one request per connection at a time, connections
kept alive and reused, the answer read by its Content-Length. Signing and bodies are
the terminal's own (terminal_sim.client.Terminal); only the transport differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
from yarl import URL

from terminal_sim.client import Answer, Terminal, TerminalConfig
from terminal_sim.protocol import StanCounter, signed_headers

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

    async def _signed(self, method: str, path: str, body: bytes) -> Answer:
        headers = signed_headers(self.config.terminal_id, self.config.mac_key, method, path, body)
        head = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._host_header}"
            f"Content-Length: {len(body)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        )
        conn = self._idle.pop() if self._idle else None
        try:
            async with asyncio.timeout(self._timeout_s):
                if conn is None:
                    conn = _Connection(*await asyncio.open_connection(self._host, self._port))
                conn.writer.write(head.encode() + body)
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
