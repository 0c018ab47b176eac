"""The ISO 8583 listener end to end (DESIGN §9): every message and response code, the
robustness cases with a neighbour connection unaffected, pipelining, stopping."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from typing import Any

import pytest

from pos_gateway.app import ISO_LISTENER
from pos_gateway.http.state import SERVICES
from pos_gateway.iso8583.listener import IsoListener
from pos_gateway.settings import Settings
from terminal_sim.client import Terminal
from terminal_sim.iso import IsoConnection, IsoTerminal, encode, frame, mac_ok
from terminal_sim.protocol import StanCounter, pin_block

from .conftest import World

pytestmark = pytest.mark.usefixtures("ledger_clean")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The gateway of these tests also listens for ISO 8583, on a free port."""
    return replace(settings, iso_port=0)


@pytest.fixture
def listener(client) -> IsoListener:
    return client.server.app[ISO_LISTENER]


class Iso:
    """Opens ISO terminals on the listener; closes their connections after the test."""

    def __init__(self, listener: IsoListener, world: World) -> None:
        self.listener = listener
        self.world = world
        self.connections: list[IsoConnection] = []

    def connection(self) -> IsoConnection:
        connection = IsoConnection("127.0.0.1", self.listener.port)
        self.connections.append(connection)
        return connection

    def terminal(self, http: Terminal, connection: IsoConnection | None = None) -> IsoTerminal:
        connection = connection or self.connection()
        return IsoTerminal(connection, http.config, StanCounter(1), timeout_s=30)

    async def new_terminal(self, **merchant: Any) -> tuple[IsoTerminal, Terminal]:
        http = await self.world.terminal(**merchant)
        return self.terminal(http), http


@pytest.fixture
async def iso(listener: IsoListener, world: World):
    helper = Iso(listener, world)
    yield helper
    for connection in helper.connections:
        await connection.close()


async def _purchase(terminal: IsoTerminal, card: dict[str, Any], amount: int, **extra: Any):
    return await terminal.transact(
        "purchase", pan=card["pan"], pin=card["pin"], amount=amount, **extra
    )


async def _balance(db, card: dict[str, Any]) -> int:
    sql = "SELECT balance FROM individual_accounts WHERE account_id = $1"
    return await db.fetchval(sql, card["account_id"])


async def _rows(db, terminal_id: str) -> int:
    sql = "SELECT count(*) FROM transactions WHERE terminal_id = $1"
    return await db.fetchval(sql, terminal_id)


async def test_sign_on_echo_sign_off_answer_00_with_a_mac(iso: Iso) -> None:
    terminal, _ = await iso.new_terminal()
    sign_on = await terminal.sign_on()
    assert sign_on["t"] == "0810" and sign_on["39"] == "00" and sign_on["60"] == "000001"
    assert "mac" not in sign_on  # IsoTerminal marks an answer whose MAC is wrong or missing
    for code in ("301", "002"):
        answer = await terminal.network(code)
        assert (answer["39"], answer["70"], "60" in answer, "mac" in answer) == (
            "00", code, False, False,
        )  # fmt: skip


async def test_purchase_approved_then_balance_inquiry(iso: Iso, world: World, db) -> None:
    terminal, _ = await iso.new_terminal()
    card = await world.card(balance=10_000)
    fields = {"11": "000010", "12": "101500", "13": _mmdd()}
    answer = await terminal.exchange(
        {"t": "0200", "3": "000000", "2": card["pan"], "4": "000000001250", "49": "156",
         "52": pin_block(terminal.config.pin_key, card["pin"], card["pan"]).upper(), **fields}
    )  # fmt: skip
    assert answer["t"] == "0210" and answer["39"] == "00" and "mac" not in answer
    assert (answer["3"], answer["4"], answer["11"], answer["12"], answer["13"]) == (
        "000000", "000000001250", "000010", "101500", fields["13"],
    )  # fmt: skip
    assert len(answer["37"]) == 12 and len(answer["38"]) == 6
    assert answer["54"] == "0002156C000000008750"
    balance = await terminal.exchange(
        {"t": "0200", "3": "310000", "2": card["pan"], "11": "000011", "12": "101600",
         "13": fields["13"], "52": pin_block(terminal.config.pin_key, card["pin"], card["pan"])}
    )  # fmt: skip
    assert (balance["39"], balance["54"], "4" in balance) == ("00", "0002156C000000008750", False)
    assert await _balance(db, card) == 8750


async def test_a_balance_inquiry_answer_carries_only_its_fields(iso: Iso, world: World) -> None:
    """DESIGN §9: 3, 11, 37, 39, 41, 54; not the time, date or amount a request carried."""
    terminal, _ = await iso.new_terminal()
    card = await world.card(balance=10_000)
    block = pin_block(terminal.config.pin_key, card["pin"], card["pan"])
    for stan, pin in (("000021", card["pin"]), ("000022", "0000")):
        block = pin_block(terminal.config.pin_key, pin, card["pan"])
        answer = await terminal.exchange(
            {"t": "0200", "3": "310000", "2": card["pan"], "4": "000000000100", "11": stan,
             "12": "101600", "13": _mmdd(), "49": "156", "52": block}
        )  # fmt: skip
        assert "mac" not in answer
        fields = set(answer) - {"p", "64"}
        if answer["39"] == "00":
            assert fields == {"t", "3", "11", "37", "39", "41", "54"}, answer
        else:
            assert answer["39"] == "55" and fields <= {"t", "3", "11", "37", "39", "41", "54"}


async def test_business_declines_over_iso(iso: Iso, world: World) -> None:
    terminal, _ = await iso.new_terminal()
    card = await world.card(balance=1_000)
    codes = {}
    codes["wrong_pin"] = (await terminal.transact(
        "purchase", pan=card["pan"], pin="0000", amount=100))[1].response_code  # fmt: skip
    codes["insufficient"] = (await _purchase(terminal, card, 5_000))[1].response_code
    codes["unknown_card"] = (await _purchase(
        terminal, {"pan": "6217000000000000026", "pin": "1234"}, 100))[1].response_code  # fmt: skip
    codes["zero"] = (await _purchase(terminal, card, 0))[1].response_code
    for kind in ("cash_withdrawal", "transfer"):
        codes[kind] = (await terminal.transact(
            kind, pan=card["pan"], pin=card["pin"], amount=100))[1].response_code  # fmt: skip
    assert codes == {
        "wrong_pin": "55", "insufficient": "51", "unknown_card": "14", "zero": "13",
        "cash_withdrawal": "57", "transfer": "57",
    }  # fmt: skip


async def test_merchant_not_designated_is_03(iso: Iso, world: World) -> None:
    terminal, _ = await iso.new_terminal(designated=False)
    card = await world.card()
    assert (await _purchase(terminal, card, 100))[1].response_code == "03"


async def test_refund_by_original_rrn(iso: Iso, world: World) -> None:
    terminal, _ = await iso.new_terminal()
    card = await world.card(balance=10_000)
    _, purchase = await _purchase(terminal, card, 2_000)
    _, refund = await terminal.transact(
        "refund", original_rrn=purchase.body["rrn"], amount=500, pan=card["pan"]
    )
    assert (refund.response_code, refund.body["amount"], refund.body["balance"]) == (
        "00", 500, 8_500,
    )  # fmt: skip
    _, too_much = await terminal.transact("refund", original_rrn=purchase.body["rrn"], amount=1_600)
    _, unknown = await terminal.transact("refund", original_rrn="999999999999", amount=100)
    assert (too_much.response_code, unknown.response_code) == ("13", "12")


async def test_reversal_and_its_repeat_restore_the_balance_once(iso: Iso, world: World, db) -> None:
    terminal, _ = await iso.new_terminal()
    card = await world.card(balance=10_000)
    body, purchase = await _purchase(terminal, card, 3_000)
    assert purchase.body["balance"] == 7_000
    reversal_body = terminal.transaction_body("reversal", original_stan=body["stan"])
    fields = terminal.iso_fields(reversal_body)
    hhmmss = body["local_time"][11:19].replace(":", "")
    assert fields["90"] == f"0200{body['stan']}{_mmdd()}{hhmmss}" + "0" * 22
    first = await terminal.exchange(fields)
    repeat = await terminal.exchange({**fields, "t": "0401"})
    assert (first["t"], first["39"], first["4"]) == ("0410", "00", "000000003000")
    assert {k: v for k, v in repeat.items() if k not in ("128", "64")} == {
        k: v for k, v in first.items() if k not in ("128", "64")
    }
    assert set(first) >= {"11", "37", "39", "41"}
    assert await _balance(db, card) == 10_000


async def test_original_after_its_reversal_is_12(iso: Iso, world: World) -> None:
    terminal, _ = await iso.new_terminal()
    card = await world.card(balance=10_000)
    stan = "000500"
    _, reversal = await terminal.transact("reversal", original_stan=stan)
    assert reversal.response_code == "00"
    _, late = await _purchase(terminal, card, 1_000, stan=stan)
    assert (late.response_code, late.body.get("balance")) == ("12", None)


async def test_repeat_0201_gets_the_stored_answer_and_other_content_94(
    iso: Iso, world: World, db
) -> None:
    terminal, _ = await iso.new_terminal()
    card = await world.card(balance=10_000)
    body, _ = await _purchase(terminal, card, 1_000)
    fields = terminal.iso_fields(body)
    first = await terminal.exchange(fields)  # the same STAN again: a retransmission
    # Another time of day and a freshly enciphered PIN block are still the same request.
    repeat = await terminal.exchange({
        **fields, "t": "0201", "12": "235959",
        "52": pin_block(terminal.config.pin_key, card["pin"], card["pan"]).upper(),
    })  # fmt: skip
    other = await terminal.exchange({**fields, "4": "000000002000"})
    assert first["39"] == "00" and (repeat["t"], repeat["37"]) == ("0210", first["37"])
    assert other["39"] == "94"
    assert await _balance(db, card) == 9_000


async def test_batch_close_in_balance_out_of_balance_and_wrong_batch(
    iso: Iso, world: World
) -> None:
    terminal, _ = await iso.new_terminal()
    card = await world.card(balance=10_000)
    await _purchase(terminal, card, 1_200)
    _, answer = await terminal.close_batch(
        1, {"count": 1, "amount": 1_200}, {"count": 0, "amount": 0}
    )
    assert answer.status == 200 and answer.body["in_balance"] is True
    assert answer.body["gateway"]["purchases"] == {"count": 1, "amount": 1_200}
    none = {"count": 0, "amount": 0}
    _, again = await terminal.close_batch(1, {"count": 1, "amount": 1_200}, none)
    assert again.body == answer.body  # the same close answers the same
    _, other = await terminal.close_batch(1, {"count": 2, "amount": 1_200}, none)
    assert other.body["error"]["code"] == "response_code_12"
    _, out = await terminal.close_batch(2, {"count": 3, "amount": 1}, {"count": 0, "amount": 0})
    assert out.status == 200 and out.body["in_balance"] is False  # 39 = 95
    _, wrong = await terminal.close_batch(9, {"count": 0, "amount": 0}, {"count": 0, "amount": 0})
    assert wrong.body["error"]["code"] == "response_code_12"
    assert (await terminal.sign_on())["60"] == "000003"


async def test_unknown_terminal_and_bad_mac_get_63_without_mac_nothing_recorded(
    iso: Iso, world: World, db
) -> None:
    terminal, http = await iso.new_terminal()
    card = await world.card(balance=10_000)
    connection = iso.connection()
    body = terminal.transaction_body("purchase", pan=card["pan"], pin=card["pin"], amount=100)
    fields = {**terminal.iso_fields(body), "41": terminal.config.terminal_id}
    unknown_id = "ZZ" + secrets.token_hex(3).upper()
    for key, terminal_id in (
        (secrets.token_bytes(32), http.config.terminal_id),
        (http.config.mac_key, unknown_id),
    ):
        fields["41"] = terminal_id
        answer, _ = await connection.request(encode(fields, key), fields["11"], terminal_id, 30)
        assert (answer["t"], answer["39"], answer["11"], answer["41"]) == (
            "0210", "63", fields["11"], terminal_id,
        )  # fmt: skip
        assert "64" not in answer and "128" not in answer
    unsigned = encode({**fields, "41": http.config.terminal_id}, None)
    answer, _ = await connection.request(unsigned, fields["11"], http.config.terminal_id, 30)
    assert answer["39"] == "63"
    assert await _rows(db, http.config.terminal_id) == 0


async def test_format_errors_are_30_maced_nothing_recorded(iso: Iso, world: World, db) -> None:
    terminal, http = await iso.new_terminal()
    card = await world.card(balance=10_000)
    body = terminal.transaction_body("purchase", pan=card["pan"], pin=card["pin"], amount=100)
    good = terminal.iso_fields(body)
    cases = [
        {k: v for k, v in good.items() if k != "4"},
        {**good, "49": "840"},
        {**good, "3": "990000"},
        {**good, "13": "0230"},
        {"t": "0800", "11": "000900", "70": "999"},
        {"t": "0100", "11": "000901"},
        {"t": "0500", "3": "920000", "11": "000902", "60": "1"},
    ]
    for fields in cases:
        answer = await terminal.exchange(fields)
        assert answer["39"] == "30" and "mac" not in answer, fields
    assert await _rows(db, http.config.terminal_id) == 0
    # Without a terminal id no MAC can be checked: still 30, unsigned.
    connection = iso.connection()
    answer, raw = await connection.request(
        encode({"t": "0800", "11": "000903", "70": "301"}, None), "000903", "", 30
    )
    assert answer["39"] == "30" and not mac_ok(raw, answer, http.config.mac_key)


async def test_disabled_terminal_gets_63_maced(iso: Iso, world: World) -> None:
    terminal, http = await iso.new_terminal()
    await world.admin(f"/v1/admin/terminals/{http.config.terminal_id}/disable", status=200)
    answer = await terminal.sign_on()
    assert answer["39"] == "63" and "mac" not in answer


# Pipelining and robustness ---------------------------------------------------------------


async def test_pipelined_requests_are_answered_out_of_order(
    iso: Iso, world: World, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal, _ = await iso.new_terminal()
    card = await world.card(balance=10_000)
    front_door = client.server.app[SERVICES].terminal
    held_stan, release = "000001", asyncio.Event()
    original = front_door.transaction
    order: list[str] = []

    async def hold_first(auth, request, malformed):
        if request is not None and request.stan == held_stan:
            await release.wait()
        return await original(auth, request, malformed)

    monkeypatch.setattr(front_door, "transaction", hold_first)

    async def send(stan: str) -> str:
        _, answer = await _purchase(terminal, card, 100, stan=stan)
        order.append(stan)
        return answer.response_code

    first = asyncio.create_task(send(held_stan))
    others = [asyncio.create_task(send(f"{n:06d}")) for n in range(2, 6)]
    codes = await asyncio.gather(*others)  # answered while the first is still held
    assert not first.done()
    release.set()
    codes.append(await first)
    assert codes == ["00"] * 5
    assert order[-1] == held_stan and len(set(order)) == 5


async def _open_raw(iso: Iso) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", iso.listener.port)


async def _eof(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 30) == b""
    except ConnectionError:
        return True


async def _neighbour_answers(terminal: IsoTerminal) -> bool:
    return (await terminal.network("301"))["39"] == "00"


@pytest.mark.parametrize("case", ["oversize", "zero_length", "undecodable", "slow", "idle"])
async def test_bad_connection_is_closed_neighbour_unaffected(iso: Iso, case: str) -> None:
    iso.listener.message_timeout_s = 0.5
    iso.listener.idle_timeout_s = 1.0 if case == "idle" else 120.0
    neighbour, _ = await iso.new_terminal()
    assert await _neighbour_answers(neighbour)
    reader, writer = await _open_raw(iso)
    if case == "oversize":
        writer.write((2049).to_bytes(2, "big") + b"0" * 100)
    elif case == "zero_length":
        writer.write(b"\x00\x00")
    elif case == "undecodable":
        writer.write(frame(b"0800" + b"\xff" * 12))
    elif case == "slow":
        writer.write(b"\x00\x40" + b"0800")  # 64 bytes announced, 4 sent
    await writer.drain()
    # While the bad connection waits to be closed, the neighbour is answered at once.
    assert await _neighbour_answers(neighbour)
    assert await _eof(reader)
    writer.close()
    assert await _neighbour_answers(neighbour)


@pytest.mark.parametrize("case", ["bad_mac", "unknown_terminal", "format_error"])
async def test_refused_message_is_answered_connection_and_neighbour_go_on(
    iso: Iso, case: str
) -> None:
    neighbour, _ = await iso.new_terminal()
    terminal, http = await iso.new_terminal()
    terminal_id, key, fields = http.config.terminal_id, http.config.mac_key, {"70": "301"}
    if case == "bad_mac":
        key = secrets.token_bytes(32)
    elif case == "unknown_terminal":
        terminal_id = "ZZ" + secrets.token_hex(3).upper()
    else:
        fields = {"70": "999"}
    message = encode({"t": "0800", "11": "000777", "41": terminal_id, **fields}, key)
    answer, raw = await terminal.connection.request(message, "000777", terminal_id, 30)
    expected = "30" if case == "format_error" else "63"
    assert answer["39"] == expected
    assert mac_ok(raw, answer, http.config.mac_key) == (case == "format_error")
    assert await _neighbour_answers(neighbour)
    assert await _neighbour_answers(terminal)  # the same connection goes on


async def test_stop_answers_requests_in_flight(
    iso: Iso, world: World, client, monkeypatch: pytest.MonkeyPatch, db
) -> None:
    terminal, http = await iso.new_terminal()
    card = await world.card(balance=10_000)
    front_door = client.server.app[SERVICES].terminal
    entered, release = asyncio.Event(), asyncio.Event()
    original = front_door.transaction

    async def held(auth, request, malformed):
        entered.set()
        await release.wait()
        return await original(auth, request, malformed)

    monkeypatch.setattr(front_door, "transaction", held)
    purchase = asyncio.create_task(_purchase(terminal, card, 700))
    await entered.wait()
    stopping = asyncio.create_task(iso.listener.close())
    await asyncio.sleep(0.2)
    assert not stopping.done()  # waiting for the request in flight
    with pytest.raises(OSError):  # no new connection is accepted
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", iso.listener.port), 5)
    release.set()
    _, answer = await purchase
    assert answer.response_code == "00" and answer.body["balance"] == 9_300
    await stopping
    assert await terminal.connection.closed_by_peer(timeout_s=30)
    assert await _rows(db, http.config.terminal_id) == 1


async def test_purchase_by_iso_retransmitted_by_json_is_debited_once(
    iso: Iso, world: World, db
) -> None:
    terminal, http = await iso.new_terminal()
    card = await world.card(balance=10_000)
    body, first = await _purchase(terminal, card, 1_500)
    assert first.response_code == "00"
    retransmission = {**body, "local_time": body["local_time"][:11] + "23:59:59+08:00"}
    again = await http.send("/v1/transactions", retransmission)
    assert (again.status, again.body.get("response_code"), again.body.get("rrn")) == (
        200, "00", first.body["rrn"],
    )  # fmt: skip
    assert await _balance(db, card) == 8_500


def _mmdd() -> str:
    from terminal_sim.protocol import local_time

    return local_time()[5:10].replace("-", "")


async def test_no_iso_listener_without_a_port(aiohttp_client: Any, settings: Settings) -> None:
    from pos_gateway.app import create_app

    client = await aiohttp_client(create_app(replace(settings, iso_port=None)))
    assert ISO_LISTENER not in client.server.app
