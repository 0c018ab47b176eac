"""A browser-like client for the page tests: its own cookies (one per person at the
screen), the CSRF token read from the last form, no automatic redirects."""

from __future__ import annotations

import re
import secrets
from http.cookies import SimpleCookie
from typing import Any

from aiohttp.test_utils import TestClient

from pos_gateway.web.core import PAGES

_CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
PASSWORD = "Office-pass-2046"


class Browser:
    def __init__(self, client: TestClient, language: str = "en") -> None:
        self.client = client
        self.cookies: dict[str, str] = {}
        self.language = language
        self.csrf = ""
        self.last_set_cookies: list[str] = []

    async def request(
        self, method: str, path: str, data: dict[str, str] | None = None, **headers: str
    ) -> tuple[int, str, Any]:
        self.client.session.cookie_jar.clear()
        sent = {"Accept-Language": self.language, **headers}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        resp = await self.client.request(
            method, path, data=data, headers=sent, allow_redirects=False
        )
        text = await resp.text()
        self.last_set_cookies = resp.headers.getall("Set-Cookie", [])
        for header in self.last_set_cookies:
            for name, morsel in SimpleCookie(header).items():
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        if match := _CSRF_RE.search(text):
            self.csrf = match.group(1)
        return resp.status, text, resp

    async def get(self, path: str, **headers: str) -> tuple[int, str, Any]:
        return await self.request("GET", path, **headers)

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True, **headers: str
    ) -> tuple[int, str, Any]:
        body = dict(data or {})
        if csrf:
            body.setdefault("csrf", self.csrf)
        return await self.request("POST", path, body, **headers)


async def operator(client: TestClient, roles: list[str], password: str = PASSWORD) -> str:
    """An operator account with a known password (no change required)."""
    username = f"op{secrets.token_hex(4)}"
    await client.server.app[PAGES].operators.ensure(username, roles, password)
    return username


async def office_login(client: TestClient, roles: list[str], language: str = "en") -> Browser:
    username = await operator(client, roles)
    browser = Browser(client, language)
    await browser.get("/office/")
    status, _, resp = await browser.post(
        "/office/login", {"username": username, "password": PASSWORD}
    )
    assert status == 303 and resp.headers["Location"] == "/office/"
    browser.username = username  # type: ignore[attr-defined]
    return browser


async def cardholder_login(client: TestClient, ssn: str, password: str) -> Browser:
    browser = Browser(client)
    await browser.get("/")
    status, text, _ = await browser.post("/login", {"ssn": ssn, "password": password})
    assert status == 303, text
    return browser
