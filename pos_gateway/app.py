"""The one wiring place: create_app(settings) builds the aiohttp application.

Purchase path: app.py -> http/terminal.py (post_transaction) -> services/terminal.py
(TerminalFrontDoor.transaction, the same for every transport) -> services/transactions.py
(TransactionService.process) -> services/group_commit.py -> store/transactions.py
(record_good_pin_batch: many debits, one commit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web

from pos_gateway.http import admin, ops, settlement_admin, terminal
from pos_gateway.http.api import document_app, get_openapi
from pos_gateway.http.caching import no_store
from pos_gateway.http.cardholder import routes as cardholder_routes
from pos_gateway.http.insurance_admin import routes as insurance_admin_routes
from pos_gateway.http.insurance_state import INSURANCE, build_insurance_services
from pos_gateway.http.middleware import error_mapping, request_context
from pos_gateway.http.roles import (
    CARDHOLDER_PREFIX,
    OPERATOR_PREFIX,
    cardholder_auth,
    operator_auth,
    sub_application,
)
from pos_gateway.http.state import METRICS, SERVICES, SETTINGS, Services
from pos_gateway.http.validation import MAX_BODY_BYTES
from pos_gateway.iso8583.listener import IsoListener
from pos_gateway.logs import configure_logging
from pos_gateway.metrics import Metrics
from pos_gateway.security.keys import KeyWrapper
from pos_gateway.security.pins import PinHasher
from pos_gateway.services.admin import AdminService
from pos_gateway.services.group_commit import ContextReads, GroupCommitter, PinTryClaims
from pos_gateway.services.terminal import TerminalFrontDoor
from pos_gateway.services.transactions import TransactionService
from pos_gateway.settings import Settings
from pos_gateway.store.database import open_database
from pos_gateway.web import setup_pages

ISO_LISTENER = web.AppKey("iso_listener", IsoListener)


def business_today(settings: Settings):
    """Dates (designation, expiry) are judged in the scheme's time zone, not the server's."""
    zone = ZoneInfo(settings.business_tz)

    def today() -> date:
        return datetime.now(zone).date()

    return today


def build_services(
    settings: Settings,
    pool,
    executor: ThreadPoolExecutor,
    metrics: Metrics,
    group_commit: GroupCommitter | None = None,
    pin_claims: PinTryClaims | None = None,
    context_reads: ContextReads | None = None,
) -> Services:
    """Services over an open pool: shared by the HTTP app and the CLI (demo-data)."""
    hasher = PinHasher(settings.secrets.pin_pepper, settings.argon2)
    wrapper = KeyWrapper(settings.secrets.master_key)
    today = business_today(settings)
    transactions = TransactionService(
        pool,
        hasher,
        executor,
        metrics,
        today,
        settings.max_amount_fen,
        group_commit,
        settings.pin_queue_max,
        pin_claims,
    )
    return Services(
        pool=pool,
        transactions=transactions,
        admin=AdminService(pool, hasher, executor, wrapper, today),
        key_wrapper=wrapper,
        terminal=TerminalFrontDoor(
            pool, wrapper, transactions, metrics, settings.request_deadline_s, context_reads
        ),
    )


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    executor = ThreadPoolExecutor(max_workers=settings.pin_threads, thread_name_prefix="pin")
    try:
        async with open_database(settings) as db:
            # With group commit on, requests' contexts are read and their PIN tries counted
            # in batches too: each a round trip per batch, not per request.
            max_batch = settings.group_commit_max_batch
            batched = max_batch > 1
            committer = (
                GroupCommitter(
                    db.pool, max_batch=max_batch, flushers=settings.group_commit_flushers
                )
                if batched
                else None
            )
            reads = ContextReads(db.pool, max_batch=max_batch) if batched else None
            claims = PinTryClaims(db.pool, max_batch=max_batch) if batched else None
            app[SERVICES] = build_services(
                settings, db.pool, executor, app[METRICS], committer, claims, reads
            )
            try:
                yield
            finally:
                if reads is not None:
                    await reads.close()
                if claims is not None:
                    await claims.close()
                if committer is not None:
                    await committer.close()
                await app[SERVICES].transactions.close()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


async def _insurance_resources(app: web.Application) -> AsyncIterator[None]:
    """The insurance side and the cardholder API, over the pool opened by _resources;
    cardholder passwords are hashed on their own threads."""
    settings = app[SETTINGS]
    executor = ThreadPoolExecutor(max_workers=settings.pin_threads, thread_name_prefix="pwd")
    try:
        app[INSURANCE] = build_insurance_services(
            settings, app[SERVICES].pool, executor, business_today(settings)
        )
        yield
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


async def _iso_listener(app: web.Application) -> AsyncIterator[None]:
    """The ISO 8583 listener (DESIGN §9) when settings.iso_port is set; closed before the
    pool, so requests in flight are answered first."""
    settings = app[SETTINGS]
    if settings.iso_port is None:
        yield
        return
    listener = IsoListener(app[SERVICES].terminal, business_today(settings))
    await listener.start(settings.iso_host, settings.iso_port, reuse_port=settings.iso_reuse_port)
    app[ISO_LISTENER] = listener
    try:
        yield
    finally:
        await listener.close()


def create_app(settings: Settings) -> web.Application:
    """The gateway application; its resources open on start-up and close on clean-up."""
    if not structlog.is_configured():
        # structlog's unconfigured default prints raw fields to stdout: never serve that way.
        configure_logging(settings.log_level)
    app = web.Application(
        middlewares=[no_store, request_context, error_mapping], client_max_size=MAX_BODY_BYTES
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(_insurance_resources)
    app.cleanup_ctx.append(_iso_listener)
    app.router.add_post("/v1/transactions", terminal.post_transaction)
    app.router.add_post("/v1/batches/close", terminal.post_batch_close)
    app.router.add_get("/v1/batches/open", terminal.get_open_batch)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/metrics", ops.metrics)
    # Authentication is by where a route is mounted (http/roles.py), never per handler.
    app.add_subapp(
        OPERATOR_PREFIX,
        sub_application(
            OPERATOR_PREFIX,
            operator_auth,
            [admin.routes, insurance_admin_routes, settlement_admin.routes],
            MAX_BODY_BYTES,
        ),
    )
    app.add_subapp(
        CARDHOLDER_PREFIX,
        sub_application(CARDHOLDER_PREFIX, cardholder_auth, [cardholder_routes], MAX_BODY_BYTES),
    )
    app.router.add_get("/v1/openapi.json", get_openapi)
    setup_pages(app)  # cardholder pages at /, the office sub-application at /office/
    document_app(app)  # last: every route above must carry its @operation or @not_api
    return app
