"""Typed application state of the insurance side and the cardholder API (set up in
app.py, next to the core services)."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from pos_gateway.security.pins import PinHasher
from pos_gateway.services.cardholder import CardholderService
from pos_gateway.services.insurance import InsuranceService
from pos_gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class InsuranceServices:
    insurance: InsuranceService
    cardholder: CardholderService


def build_insurance_services(
    settings: Settings, pool: asyncpg.Pool, executor: Executor, today
) -> InsuranceServices:
    """Password hashing runs on its own threads: a flood of logins cannot delay the PIN
    checks of the purchase path."""
    hasher = PinHasher(settings.secrets.pin_pepper, settings.argon2)
    return InsuranceServices(
        insurance=InsuranceService(pool, today),
        cardholder=CardholderService(pool, hasher, executor, today),
    )


INSURANCE = web.AppKey("insurance", InsuranceServices)
