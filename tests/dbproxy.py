"""A TCP proxy in front of the test database that a test can break in the ways a network
and a server break: refuse connections, drop them all, go silent (no RST: bytes are held,
not lost, until it heals) and cut connections at random before or after a statement
reaches the server."""

from __future__ import annotations

import asyncio
import contextlib
import random
from urllib.parse import parse_qs, urlsplit, urlunsplit


class DatabaseProxy:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        parts = urlsplit(dsn)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        port = parts.port or 5432
        if socket_dir:  # embedded server: a Unix socket
            self._target = ("unix", f"{socket_dir}/.s.PGSQL.{port}")
        else:
            self._target = ("tcp", (parts.hostname or "127.0.0.1", port))
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._cut_probability = 0.0
        self._random = random.Random()
        self.cuts = {"before": 0, "after": 0}
        self.port = 0

    @property
    def dsn(self) -> str:
        parts = urlsplit(self._dsn)
        user = parts.username or "postgres"
        return urlunsplit(("postgresql", f"{user}@127.0.0.1:{self.port}", parts.path, "", ""))

    async def start(self) -> None:
        """Accept connections (again, on the same port after cut())."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.drop_all()

    def drop_all(self) -> None:
        """Close every open connection (a server crash as its clients see it)."""
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def go_silent(self) -> None:
        """A partition with no RST: nothing passes, nothing is closed."""
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def cut_at_random(self, probability: float, seed: int) -> None:
        """Each client message is, with `probability`, the last on its connection: half of
        the time dropped before the server sees it, half after (its answer lost)."""
        self._cut_probability = probability
        self._random.seed(seed)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A connection attempt during a partition waits for it to heal, like a SYN resent.
        try:
            await self._flowing.wait()
        except asyncio.CancelledError:
            writer.close()
            return
        kind, address = self._target
        try:
            if kind == "unix":
                up_reader, up_writer = await asyncio.open_unix_connection(address)
            else:
                up_reader, up_writer = await asyncio.open_connection(*address)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        # Cancelled when the test's loop closes with connections open: that is the end.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                self._pipe(reader, up_writer, writer, upstream=True),
                self._pipe(up_reader, writer, up_writer, upstream=False),
            )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                cut = upstream and self._random.random() < self._cut_probability
                if cut and self._random.random() < 0.5:
                    self.cuts["before"] += 1
                    break
                writer.write(data)
                await writer.drain()
                if cut:
                    self.cuts["after"] += 1
                    # Let the server take the message in before both sides are closed.
                    await asyncio.sleep(0.05)
                    break
        writer.close()
        other.close()
        self._writers.discard(writer)
        self._writers.discard(other)
