"""Finding the Chromium the browser tests and `make screenshots` drive: Debian's
`chromium` package (Playwright cannot download its own browsers here)."""

from __future__ import annotations

import os
import shutil

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """POS_CHROMIUM if set, else the first Chromium on PATH."""
    configured = os.environ.get("POS_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


# Chromium refuses to run as root with its sandbox; CI and these machines run as root.
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--lang=zh-CN"]


if __name__ == "__main__":
    # `make test` says before the run whether the browser tests will run.
    found = find_chromium()
    if found:
        print(f"== browser tests: Chromium at {found}")
    else:
        print(
            "== BROWSER TESTS WILL BE SKIPPED: no Chromium found "
            "(apt-get install chromium, or set POS_CHROMIUM)"
        )
