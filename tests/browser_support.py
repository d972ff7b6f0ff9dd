"""Headless Chromium (Debian's, driven by Playwright) for the UI tests; screenshots go to ``test-artifacts/``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"


@contextmanager
def ui_page(credentials: tuple[str, str] | None = None) -> Iterator[Any]:
    """A headless Chromium page for the Dagster UI, logged in with HTTP basic ``credentials`` if given."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: make test installs Debian's chromium package (make system-packages)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            login = {"username": credentials[0], "password": credentials[1]} if credentials else None
            page = browser.new_page(viewport={"width": 1600, "height": 1000}, http_credentials=login)
            page.set_default_timeout(60_000)
            # The first-visit "Join the Dagster community" dialog opens whenever the UI gets to it (after
            # the page settled, in one CI run) and then blocks every click: dismiss it whenever it shows.
            page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
            yield page
        finally:
            browser.close()
