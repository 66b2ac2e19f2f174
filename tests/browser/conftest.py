"""Headless Chromium (Debian's package, driven by Playwright) against the real running stack.

The stack (`base_url`) is the shared one in tests/stack.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from jobs.settings import ROOT
from tests.conftest import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT_DIR = Path(os.environ.get("HWR_SCREENSHOT_DIR", ROOT / "docs" / "screenshots"))
# The server's reason for refusing a text file, in whatever words it chooses.
NOT_AN_IMAGE = re.compile(r"\bnot\b.*\bimage\b", re.IGNORECASE)
# Every expectation waits on the page, and often on the server behind it: on a loaded 2-core CI
# machine an answer can take the whole predict wait plus a job poll, past Playwright's 5 s.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    require(CHROMIUM.is_file(), f"{CHROMIUM} is absent: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh page (own storage, so settings don't leak between tests) at a desktop size."""
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1100, "height": 800}, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """Everything the page reports as an error: console.error, failed loads, uncaught errors."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    return errors


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
