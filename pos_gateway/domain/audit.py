"""Who did something, from where: the subject of every audit record."""

from __future__ import annotations

from dataclasses import dataclass

OPERATOR, CARDHOLDER, SYSTEM = "operator", "cardholder", "system"


@dataclass(frozen=True, slots=True)
class Actor:
    kind: str  # operator | cardholder | system
    actor_id: str  # operator name, the cardholder's ID number, or the command
    remote_addr: str | None = None
    request_id: str | None = None


SYSTEM_ACTOR = Actor(SYSTEM, "pos-gateway")
