"""Typed application state shared by the handlers (set up in app.py)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiohttp import web

from pos_gateway.metrics import Metrics
from pos_gateway.security.keys import KeyWrapper
from pos_gateway.services.admin import AdminService
from pos_gateway.services.terminal import TerminalFrontDoor
from pos_gateway.services.transactions import TransactionService
from pos_gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    pool: asyncpg.Pool
    transactions: TransactionService
    admin: AdminService
    key_wrapper: KeyWrapper
    terminal: TerminalFrontDoor


SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
SERVICES = web.AppKey("services", Services)
