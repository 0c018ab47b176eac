"""make screenshots: pictures of the main pages into docs/, for the README.

Starts a gateway on a fresh embedded database (POS_SCREENSHOT_PORT, default 8091), loads
the demo world, and photographs with Debian's chromium (Playwright): the cardholder's
balance and statement, the office's person search and the counter's PIN reset form.
Chinese text needs a CJK font (apt-get install fonts-wqy-microhei)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import LAUNCH_ARGS, find_chromium  # noqa: E402

DOCS = ROOT / "docs"
VIEWPORT = {"width": 1100, "height": 760}


def _wait_healthy(url: str, gateway: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.poll() is not None:
            raise SystemExit("screenshots: the gateway exited; see its log above")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("screenshots: the gateway did not become healthy")


async def _photograph(chromium: str, url: str, world: dict) -> list[Path]:
    from playwright.async_api import async_playwright

    card = next(c for c in world["cards"] if c["alias"] == "card-01")
    counter = next(o for o in world["operators"] if o["role"] == "counter")
    DOCS.mkdir(exist_ok=True)
    shots = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        holder = await browser.new_page(locale="zh-CN", viewport=VIEWPORT)
        await holder.goto(url + "/")
        await holder.fill("#ssn", card["ssn"])
        await holder.fill("#password", card["password"])
        await holder.click("form[action='/login'] button")
        for name, path in (("cardholder-balance", "/"), ("cardholder-statement", "/statement")):
            await holder.goto(url + path)
            shots.append(DOCS / f"{name}.png")
            await holder.screenshot(path=shots[-1], full_page=True)

        office = await browser.new_page(locale="zh-CN", viewport=VIEWPORT)
        await office.goto(url + "/office/")
        await office.fill("#username", counter["username"])
        await office.fill("#password", counter["password"])
        await office.click("form[action='/office/login'] button")
        await office.goto(url + "/office/people?q=Wang")
        shots.append(DOCS / "office-search.png")
        await office.screenshot(path=shots[-1], full_page=True)
        await office.goto(url + f"/office/people/{card['ssn']}")
        await office.fill("#pin_typed_ssn", card["ssn"])
        form = office.locator("form[action$='/pin-reset']").locator("xpath=..")
        shots.append(DOCS / "office-pin-reset.png")
        await form.screenshot(path=shots[-1])
        await browser.close()
    return shots


def main() -> int:
    chromium = find_chromium()
    if chromium is None:
        print("screenshots: no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 1
    port = os.environ.get("POS_SCREENSHOT_PORT", "8091")
    url = f"http://127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="pos-screenshots-"))
    env = {**os.environ, "POS_DATA_DIR": str(data_dir / "data"), "POS_LOG_LEVEL": "warning"}
    env.pop("POS_DATABASE_URL", None)
    gateway = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "pos_gateway", "serve", "--port", port], env=env
    )
    try:
        _wait_healthy(url, gateway)
        out = data_dir / "demo.json"
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pos_gateway", "demo-data", "--out", str(out)],
            env=env,
            check=True,
        )
        # A few purchases and refunds on the statement: the scripted terminal session.
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "terminal_sim", "scenario", str(ROOT / "scenarios/demo.toml"),
             "--url", url, "--demo", str(out)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        shots = asyncio.run(_photograph(chromium, url, json.loads(out.read_text())))
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)
    for shot in shots:
        print(f"screenshots: {shot.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
