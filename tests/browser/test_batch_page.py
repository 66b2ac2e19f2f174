"""The batch page: upload, progress, results grid, CSV and the shareable job link."""

from __future__ import annotations

import base64
import csv
import io
import re
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, Route, expect

from ml.data import load_split
from tests.browser.conftest import NOT_AN_IMAGE

BATCH_SIZE = 20
JOB_TIMEOUT_MS = 120_000
JOB_URL = re.compile(r"/jobs/[0-9a-f-]{36}$")

# Builds a DataTransfer in the page, so a test can drop files the way a user drags them in.
DATA_TRANSFER = """(files) => {
  const transfer = new DataTransfer();
  for (const [name, base64] of files) {
    const bytes = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
    transfer.items.add(new File([bytes], name));
  }
  return transfer;
}"""


def png(pixels: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def emnist_pngs(emnist_dir: Path, tmp_path: Path) -> list[Path]:
    """The first EMNIST test images as PNG files, each named after its true label."""
    split = load_split(emnist_dir, "pool47", "test")
    paths = []
    for index in range(BATCH_SIZE):
        label = split.characters[split.labels[index]]
        path = tmp_path / f"emnist-{index:02d}-{label}.png"
        path.write_bytes(png(split.images[index]))
        paths.append(path)
    return paths


def drop_files(page: Page, files: dict[str, bytes]) -> None:
    encoded = [[name, base64.b64encode(data).decode()] for name, data in files.items()]
    transfer = page.evaluate_handle(DATA_TRANSFER, encoded)
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})


def wait_for_results(page: Page, count: int) -> None:
    expect(page.locator("#job-text")).to_contain_text("100%", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#results-grid .card")).to_have_count(count)


def test_a_batch_of_emnist_images_runs_to_a_results_grid_and_csv(
    page: Page, console_errors: list[str], emnist_pngs: list[Path], screenshot_dir: Path
) -> None:
    page.goto("/batch")
    page.locator("#files").set_input_files(emnist_pngs)
    expect(page.locator("#upload-text")).to_have_text("100%")
    wait_for_results(page, BATCH_SIZE)
    expect(page).to_have_url(JOB_URL)
    cards = page.locator("#results-grid .card")
    for index in range(BATCH_SIZE):
        card = cards.nth(index)
        expect(card.locator(".card-filename")).to_have_text(emnist_pngs[index].name)
        expect(card.locator(".card-char")).to_have_text(re.compile(r"^\S$"))
        expect(card.locator(".card-confidence")).to_have_text(re.compile(r"^\d+%$"))
        # Uploaded here, so each result sits beside the file itself.
        assert card.locator("img").get_attribute("src").startswith("blob:")
    page.screenshot(path=screenshot_dir / "batch.png", full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert len(rows) == BATCH_SIZE
    assert [row["filename"] for row in rows] == [path.name for path in emnist_pngs]
    assert {row["status"] for row in rows} == {"succeeded"}
    assert console_errors == []


def test_the_job_link_reopens_the_results(
    page: Page, console_errors: list[str], emnist_pngs: list[Path]
) -> None:
    page.goto("/batch")
    page.locator("#files").set_input_files(emnist_pngs[:3])
    wait_for_results(page, 3)
    shared = page.locator("#share-url").input_value()
    assert JOB_URL.search(shared)

    page.goto(shared)
    wait_for_results(page, 3)
    expect(page.locator("#results-grid .card-filename")).to_have_text(
        [path.name for path in emnist_pngs[:3]]
    )
    expect(page.locator("#upload-row")).to_be_hidden()
    assert console_errors == []


def test_polling_waits_out_a_rate_limit(
    page: Page, console_errors: list[str], emnist_pngs: list[Path]
) -> None:
    refused: list[str] = []

    def rate_limited_once(route: Route) -> None:
        if refused:
            route.continue_()
            return
        refused.append(route.request.url)
        detail = {"detail": "Too many requests."}
        route.fulfill(status=429, headers={"Retry-After": "1"}, json=detail)

    page.route(re.compile(r"/api/v1/jobs/[0-9a-f-]{36}\?"), rate_limited_once)
    page.goto("/batch")
    page.locator("#files").set_input_files(emnist_pngs[:2])
    wait_for_results(page, 2)
    expect(page.locator("#notice")).to_be_hidden()
    assert len(refused) == 1
    assert len(console_errors) == 1 and "status of 429" in console_errors[0]


def test_a_cancel_that_crosses_the_jobs_end_keeps_its_results(
    page: Page, console_errors: list[str], emnist_pngs: list[Path]
) -> None:
    running_on_the_page = threading.Event()
    running_on_the_page.set()

    def still_running(route: Route) -> None:
        if not running_on_the_page.is_set():
            route.continue_()
            return
        job = route.fetch().json()
        route.fulfill(json={**job, "status": "running", "finished_at": None})

    page.route(re.compile(r"/api/v1/jobs/[0-9a-f-]{36}\?"), still_running)
    page.goto("/batch")
    page.locator("#files").set_input_files(emnist_pngs[:2])
    expect(page).to_have_url(JOB_URL)
    expect(page.get_by_role("button", name="Cancel job")).to_be_visible()
    job_url = "/api/v1/jobs/" + page.url.rsplit("/", 1)[-1]
    for _ in range(600):
        if page.request.get(job_url).json()["status"] == "succeeded":
            break
        page.wait_for_timeout(100)

    # The page still sees the job running: its Cancel crosses the job's end.
    with page.expect_response(re.compile(r"/cancel$")) as cancel:
        page.get_by_role("button", name="Cancel job").click()
    assert cancel.value.status == 409
    running_on_the_page.clear()
    wait_for_results(page, 2)
    expect(page.locator("#notice")).to_be_hidden()
    assert len(console_errors) == 1 and "status of 409" in console_errors[0]
    page.unroute_all(behavior="ignoreErrors")


def test_dropped_zip_is_expanded_and_a_refused_file_shows_its_reason(
    page: Page, console_errors: list[str], emnist_pngs: list[Path]
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in emnist_pngs[:3]:
            bundle.write(path, path.name)
    page.goto("/batch")
    drop_files(page, {"letters.zip": archive.getvalue(), "notes.txt": b"not a picture"})
    wait_for_results(page, 4)
    failed = page.locator("#results-grid .card.is-failed")
    expect(failed).to_have_count(1)
    expect(failed.locator(".card-filename")).to_have_text("notes.txt")
    expect(failed.locator(".card-error")).to_have_text(NOT_AN_IMAGE)
    expect(page.locator("#results-summary")).to_contain_text("1 failed")
    assert console_errors == []


def test_a_refused_upload_shows_the_servers_message(page: Page, console_errors: list[str]) -> None:
    page.goto("/batch")
    drop_files(page, {"broken.zip": b"PK\x03\x04 this is not really a zip"})
    expect(page.get_by_role("alert")).to_contain_text("broken.zip")
    expect(page.locator("#results")).to_be_hidden()
    # The browser logs the 4xx answer itself; the page adds nothing of its own.
    assert [error for error in console_errors if "status of 422" not in error] == []


def test_a_link_to_a_missing_job_says_so(page: Page) -> None:
    page.goto("/jobs/00000000-0000-0000-0000-000000000000")
    expect(page.get_by_role("alert")).to_contain_text("no job at this link")


@pytest.mark.parametrize("path", ["/", "/batch"])
def test_fits_a_phone_screen(page: Page, console_errors: list[str], path: str) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(path)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert console_errors == []


def test_the_file_chooser_is_reachable_from_the_keyboard(page: Page) -> None:
    page.goto("/batch")
    page.locator("#model").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "files"
