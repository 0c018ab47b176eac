"""Web pages (DESIGN §11): cardholder pages at /, office pages at /office/.

`setup_pages(app)` is the one call app.py makes: templates (Jinja2, autoescaped), the
page services (built when the app starts, over the pool the JSON API uses), the
cardholder routes and the office sub-application."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import aiohttp_jinja2
import jinja2
from aiohttp import web

from pos_gateway.http.state import SERVICES, SETTINGS
from pos_gateway.security.pins import PinHasher
from pos_gateway.services.operators import OperatorService
from pos_gateway.services.pages import PageQueries
from pos_gateway.web import cardholder, office
from pos_gateway.web.core import PAGES, PageServices


def _environment() -> jinja2.BaseLoader:
    return jinja2.PackageLoader("pos_gateway.web", "templates")


async def _page_resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Operator passwords are hashed on their own two threads, off the purchase path's.
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="opw")
    try:
        pool = app[SERVICES].pool
        app[PAGES] = PageServices(
            operators=OperatorService(
                pool, PinHasher(settings.secrets.pin_pepper, settings.argon2), executor
            ),
            queries=PageQueries(pool),
            # A key of its own, derived from the pepper: CSRF tokens reveal nothing of it.
            csrf_key=hmac.new(
                settings.secrets.pin_pepper, b"pos-gateway web csrf", hashlib.sha256
            ).digest(),
            trust_forwarded_proto=settings.trust_forwarded_proto,
        )
        yield
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def setup_pages(app: web.Application) -> None:
    """Call after the app's own resources are registered (the pages use their pool)."""
    aiohttp_jinja2.setup(
        app,
        loader=_environment(),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    )
    app.cleanup_ctx.append(_page_resources)
    app.router.add_routes(cardholder.routes)
    app.add_subapp(office.COOKIE_PATH, office.office_app())
