"""With API keys on, the batch page asks for the key once and then uploads, polls and downloads."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Dialog, expect

from api.access import key_digest
from jobs.settings import Settings
from tests.browser.test_batch_page import png, wait_for_results
from tests.service.conftest import start_gateway, stop

KEY = "browser-test-key"


@pytest.fixture(scope="module")
def keyed_url(stack_settings: Settings, base_url: str) -> Iterator[str]:
    """A second gateway on the shared stack's database and worker, requiring `KEY`."""
    settings = stack_settings.model_copy(update={"api_key_hashes": [key_digest(KEY)]})
    gateway, url = start_gateway(settings)
    yield url
    stop(gateway)


def test_the_batch_page_asks_for_the_key_once(
    browser: Browser, keyed_url: str, tmp_path: Path
) -> None:
    files = []
    for index in range(3):
        pixels = np.zeros((28, 28), np.uint8)
        pixels[5:23, 11 + index : 15 + index] = 255
        files.append(tmp_path / f"bar-{index}.png")
        files[-1].write_bytes(png(pixels))
    context = browser.new_context(base_url=keyed_url, accept_downloads=True)
    page = context.new_page()
    prompts: list[str] = []

    def answer(dialog: Dialog) -> None:
        prompts.append(dialog.message)
        dialog.accept(KEY)

    page.on("dialog", answer)
    page.goto("/batch")
    page.locator("#files").set_input_files(files)
    wait_for_results(page, len(files))
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [row["filename"] for row in rows] == [path.name for path in files]
    assert len(prompts) == 1 and "API key" in prompts[0]
    expect(page.locator("#notice")).to_be_hidden()
    context.close()
