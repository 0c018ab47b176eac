"""Logs are JSON lines; no PIN, PIN block, key or token ever appears, PANs only masked."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest

from pos_gateway.domain.cards import mask_pan
from pos_gateway.logs import configure_logging, redact_secrets
from pos_gateway.settings import Settings

from .conftest import World


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    try:
        yield stream
    finally:
        configure_logging("info")


async def test_no_secret_reaches_the_logs(
    log_stream: io.StringIO, world: World, settings: Settings
) -> None:
    terminal = await world.terminal()
    card = await world.card(balance=5_000, pin="735190")
    generated = await world.admin("/v1/admin/cards", {"ssn": card["ssn"]})  # PIN chosen by us
    secrets_sent = [card["pin"], generated["pin"]]
    for pin in ("735190", "111111", "735190"):
        body, answer = await terminal.transact("purchase", pan=card["pan"], pin=pin, amount=100)
        secrets_sent.append(body["pin_block"])
        assert answer.status == 200
    body, _ = await terminal.transact("balance_inquiry", pan="6217990000999999994", pin="2468")
    secrets_sent.append(body["pin_block"])
    await world.client.post("/v1/admin/people", json={}, headers={"Authorization": "Bearer x"})

    output = log_stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]

    assert any(line.get("event") == "transaction" for line in lines)
    assert mask_pan(card["pan"]) in output
    forbidden = [
        card["pan"],
        generated["pan"],
        "6217990000999999994",
        terminal.config.mac_key.hex(),
        terminal.config.pin_key.hex(),
        settings.secrets.admin_token,
        settings.secrets.master_key.hex(),
        settings.secrets.pin_pepper.hex(),
        *secrets_sent,
    ]
    for secret in forbidden:
        # Whole tokens only: a 6-digit PIN may occur by chance inside a timestamp or an id.
        alone = re.compile(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])")
        assert not alone.search(output), f"secret leaked into logs: {secret[:4]}…"
    pins = {card["pin"], generated["pin"], "111111", "2468"}
    for line in lines:
        for value in line.values():
            assert str(value) not in pins


def test_redaction_processor_masks_and_drops() -> None:
    event = {
        "event": "x",
        "pan": "6217000000000000018",
        "pin": "1234",
        "pin_block": "00" * 16,
        "mac_key": "ab" * 32,
        "Authorization": "Bearer abc",
        "note": "card 6217000000000000018 declined",
        "nested": {"pin_key": "cd" * 16, "list": ["6217000000000000018"]},
        "merchant_id": "100000000000001",
    }

    out = redact_secrets(None, "info", event)

    assert out["pan"] == "621700*********0018"
    assert out["pin"] == out["pin_block"] == out["mac_key"] == "[redacted]"
    assert out["Authorization"] == "[redacted]"
    assert out["note"] == "card 621700*********0018 declined"
    assert out["nested"] == {"pin_key": "[redacted]", "list": ["621700*********0018"]}
    assert out["merchant_id"] == "100000000000001"  # 15 digits: not a PAN here
