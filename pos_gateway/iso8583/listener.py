"""The ISO 8583 TCP listener (DESIGN §9), in the gateway's own process and event loop.

Each connection reads length-prefixed messages one after the other and hands each to its
own task, so a terminal may pipeline and answers leave as they are ready, matched by
fields 11 and 41. A bad connection (oversize, slow, undecodable) is closed alone; nothing
it does blocks another connection's reads or writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import structlog

from pos_gateway.errors import ConflictsWithRecord, DomainError, InvalidInput
from pos_gateway.iso8583 import codec, messages
from pos_gateway.services.health import database_unavailable
from pos_gateway.services.terminal import TerminalAuth, TerminalFrontDoor, TerminalOutcome

log = structlog.get_logger("pos_gateway.iso8583")

MESSAGE_TIMEOUT_S = 10.0  # from the first length byte to the message's last byte
IDLE_TIMEOUT_S = 120.0
MAX_IN_FLIGHT = 64  # per connection; past it, the next message is read when one is answered
WRITE_TIMEOUT_S = 10.0  # a peer that reads no answers for this long is dropped
STOP_GRACE_S = 10.0  # on stop, in-flight requests get this long to be answered


class IsoListener:
    def __init__(
        self,
        front_door: TerminalFrontDoor,
        business_date: Callable[[], date],
        *,
        message_timeout_s: float = MESSAGE_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_in_flight: int = MAX_IN_FLIGHT,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self._front_door = front_door
        self._business_date = business_date
        self.message_timeout_s = message_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_in_flight = max_in_flight
        self.stop_grace_s = stop_grace_s
        self._server: asyncio.Server | None = None
        self._connections: dict[_Connection, asyncio.Task[Any]] = {}
        self._port = 0

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system when asked for 0)."""
        return self._port

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        self._server = await asyncio.start_server(
            self._serve, host, port, reuse_port=reuse_port or None
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("iso_listener_started", host=host, port=self.port)

    async def close(self) -> None:
        """Stop accepting, stop reading, answer what is in flight (or cancel it after the
        grace period: each write is one statement, so a cancelled one leaves nothing),
        then close every connection."""
        if self._server is None or not self._server.is_serving():
            return
        self._server.close()
        for connection in list(self._connections):
            connection.stop_reading()
        tasks = list(self._connections.values())
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_grace_s + 1)
        await self._server.wait_closed()
        log.info("iso_listener_stopped")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        self._connections[connection] = asyncio.current_task()  # type: ignore[assignment]
        try:
            await connection.serve()
        finally:
            del self._connections[connection]

    async def answer(
        self, raw: bytes, fields: dict[str, str]
    ) -> tuple[dict[str, str], bytes | None]:
        """The answer's fields to one decoded request, and the key to MAC it with (None:
        no MAC, the request failed authentication)."""
        terminal_id = fields.get("41", "")
        if not messages.TERMINAL_ID_RE.fullmatch(terminal_id):
            # No terminal to check a MAC against: a format error, unsigned.
            return messages.refusal(fields, messages.FORMAT_ERROR), None
        structlog.contextvars.bind_contextvars(terminal_id=terminal_id, stan=fields.get("11"))
        auth = TerminalAuth(
            terminal_id=terminal_id,
            verify_mac=lambda mac_key: codec.mac_is_valid(raw, fields, mac_key),
            transport="iso8583",
        )
        mti = fields["t"]
        if mti in messages.TRANSACTION_MTIS:
            return await self._transaction(auth, fields)
        if mti == messages.BATCH_CLOSE_MTI:
            return await self._batch_close(auth, fields)
        # 0800 and any other MTI: authenticate, then answer or refuse the format.
        outcome = await self._front_door.open_batch(auth)
        if outcome.status != "answer":
            return _refused(fields, outcome)
        if mti != messages.NETWORK_MTI:
            return messages.refusal(fields, messages.FORMAT_ERROR), outcome.mac_key
        try:
            code = messages.network_code(fields)
        except InvalidInput:
            return messages.refusal(fields, messages.FORMAT_ERROR), outcome.mac_key
        assert outcome.answer is not None
        batch_no = outcome.answer["batch_no"] if code == messages.SIGN_ON else None
        log.info("iso_network", code=code)
        return messages.network_answer(fields, batch_no), outcome.mac_key

    async def _transaction(
        self, auth: TerminalAuth, fields: dict[str, str]
    ) -> tuple[dict[str, str], bytes | None]:
        try:
            request = messages.parse_transaction(fields, self._business_date())
            malformed = None
        except InvalidInput as exc:
            request, malformed = None, exc
        outcome = await self._front_door.transaction(auth, request, malformed)
        if outcome.status != "answer":
            return _refused(fields, outcome)
        assert outcome.answer is not None
        if outcome.mac_key is None:
            # 91/96 before the terminal was authenticated (the database did not give its
            # key in time): no key to MAC with.
            return messages.unsigned_answer(fields, outcome.answer["response_code"]), None
        return messages.transaction_answer(fields, outcome.answer), outcome.mac_key

    async def _batch_close(
        self, auth: TerminalAuth, fields: dict[str, str]
    ) -> tuple[dict[str, str], bytes | None]:
        try:
            batch_no, figures, digest = messages.parse_batch_close(fields)
        except InvalidInput as exc:
            # Reported once the terminal is authenticated: MACed only for the real one.
            outcome = await self._front_door.close_batch(auth, 0, {}, b"", malformed=exc)
        else:
            try:
                outcome = await self._front_door.close_batch(auth, batch_no, figures, digest)
            except ConflictsWithRecord as exc:
                # A close naming a batch that is not open, or repeating a closed one with
                # other figures: an invalid transaction (12), not "out of balance" (95,
                # only for a valid close whose figures differ). The front door raised after
                # authenticating, so the refusal is MACed: its key comes from open_batch.
                keyed = await self._front_door.open_batch(auth)
                outcome = TerminalOutcome("malformed", error=exc, mac_key=keyed.mac_key)
        if outcome.status != "answer":
            return _refused(fields, outcome)
        assert outcome.answer is not None
        return messages.batch_close_answer(fields, outcome.answer), outcome.mac_key


def _refused(
    fields: dict[str, str], outcome: TerminalOutcome
) -> tuple[dict[str, str], bytes | None]:
    if outcome.status == "unauthenticated":
        return messages.refusal(fields, messages.SECURITY_VIOLATION), None
    if outcome.status == "unavailable":
        # MACed once the terminal was authenticated; before that there is no key.
        log.error("database_unavailable", error=type(outcome.error).__name__)
        return messages.refusal(fields, messages.ISSUER_UNAVAILABLE), outcome.mac_key
    if outcome.status == "disabled":
        # Authenticated, so MACed; a disabled terminal may not transact (63 too).
        return messages.refusal(fields, messages.SECURITY_VIOLATION), outcome.mac_key
    # Malformed: a format error; a batch close that names a batch which is not open, or
    # repeats a closed one with other figures, is an invalid transaction.
    code = (
        messages.FORMAT_ERROR
        if outcome.error is None or isinstance(outcome.error, InvalidInput)
        else messages.INVALID_TRANSACTION
    )
    out = messages.refusal(fields, code)
    if fields["t"] == messages.BATCH_CLOSE_MTI and "60" in fields:
        out["60"] = fields["60"]
    return out, outcome.mac_key


class _Connection:
    def __init__(
        self, listener: IsoListener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._listener = listener
        self._reader = reader
        self._writer = writer
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(listener.max_in_flight)
        self._reading: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        peer = writer.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def stop_reading(self) -> None:
        if self._reading is not None:
            self._reading.cancel()

    async def serve(self) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(transport="iso8583", peer=self._peer)
        self._reading = asyncio.create_task(self._read_guarded())
        try:
            await asyncio.wait({self._reading})
            if self._in_flight:
                # What was read is answered before the connection closes.
                _, late = await asyncio.wait(self._in_flight, timeout=self._listener.stop_grace_s)
                for task in late:
                    task.cancel()
        finally:
            self._reading.cancel()
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def _read_guarded(self) -> None:
        try:
            await self._read_loop()
        except Exception:
            # Whatever went wrong ends this connection only, never the listener.
            log.exception("iso_connection_failed")

    async def _read_loop(self) -> None:
        listener = self._listener
        while True:
            try:
                first = await asyncio.wait_for(self._reader.readexactly(1), listener.idle_timeout_s)
            except TimeoutError:
                log.info("iso_connection_idle", idle_s=listener.idle_timeout_s)
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the terminal hung up
            try:
                raw = await asyncio.wait_for(self._read_message(first), listener.message_timeout_s)
            except TimeoutError:
                log.warning("iso_message_too_slow", limit_s=listener.message_timeout_s)
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if raw is None:
                return
            try:
                fields = codec.decode(raw)
            except codec.DecodeError as exc:
                log.warning("iso_undecodable", error=str(exc)[:200], length=len(raw))
                return
            await self._slots.acquire()
            task = asyncio.create_task(self._handle(raw, fields))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _read_message(self, first: bytes) -> bytes | None:
        length = int.from_bytes(first + await self._reader.readexactly(1), "big")
        if not 0 < length <= codec.MAX_MESSAGE_BYTES:
            log.warning("iso_bad_length", length=length, max=codec.MAX_MESSAGE_BYTES)
            return None
        return await self._reader.readexactly(length)

    async def _handle(self, raw: bytes, fields: dict[str, str]) -> None:
        started = time.perf_counter()
        try:
            try:
                answer, mac_key = await self._listener.answer(raw, fields)
                message = codec.encode(answer, mac_key)
            except DomainError as exc:
                log.warning("iso_request_refused", error=exc.code)
                message = codec.encode(messages.refusal(fields, messages.FORMAT_ERROR), None)
            except Exception as exc:
                # Never the listener's end: the terminal gets 91 (database unavailable, or
                # a batch request past its deadline) or 96, and reverses if it must.
                if database_unavailable(exc):
                    log.error("database_unavailable", error=type(exc).__name__)
                    code = "91"
                else:
                    log.exception("iso_request_failed")
                    code = "96"
                message = codec.encode(messages.refusal(fields, code), None)
            await self._send(message)
            log.debug(
                "iso_answered", mti=fields["t"], ms=round(1000 * (time.perf_counter() - started))
            )
        except Exception:
            log.exception("iso_answer_not_sent")
        finally:
            self._slots.release()

    async def _send(self, message: bytes) -> None:
        if self._writer.is_closing():
            return
        # One write() of the whole frame: answers of concurrent tasks never interleave.
        self._writer.write(codec.frame(message))
        async with self._write_lock:
            try:
                await asyncio.wait_for(self._writer.drain(), WRITE_TIMEOUT_S)
            except (TimeoutError, ConnectionError):
                log.warning("iso_peer_not_reading")
                self.stop_reading()
                self._writer.close()
