"""The draw page: characters drawn with the mouse are read by the real model through the API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import NOT_AN_IMAGE

# Strokes in fractions of the pad, drawn the way people write these characters. Shapes with no
# look-alike in EMNIST, so a wrong answer means the page (not the model) is at fault.
Stroke = list[tuple[float, float]]
CHARACTERS: dict[str, list[Stroke]] = {
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.42, 0.85)]],
    "X": [[(0.25, 0.2), (0.75, 0.8)], [(0.75, 0.2), (0.25, 0.8)]],
    "L": [[(0.3, 0.15), (0.3, 0.85), (0.72, 0.85)]],
}

INK_PIXELS = """() => {
  const pad = document.querySelector("#pad");
  const { data } = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height);
  let ink = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] < 128) ink += 1;
  return ink;
}"""


def draw(page: Page, strokes: list[Stroke]) -> None:
    box = page.locator("#pad").bounding_box()
    assert box is not None

    def move(x: float, y: float, steps: int = 1) -> None:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=steps)

    for (x, y), *rest in strokes:
        move(x, y)
        page.mouse.down()
        for x_next, y_next in rest:
            move(x_next, y_next, steps=12)
        page.mouse.up()


def open_draw_page(page: Page, auto_predict: bool = False) -> None:
    page.goto("/")
    page.locator("#auto-predict").set_checked(auto_predict)


def expect_answer(page: Page, character: str) -> None:
    expect(page.locator("#answer-char")).to_have_text(character)
    expect(page.locator("#answer-confidence")).to_have_text(re.compile(r"^\d+% confident$"))


@pytest.mark.parametrize("character", CHARACTERS)
def test_a_drawn_character_is_recognised(
    page: Page, console_errors: list[str], character: str
) -> None:
    open_draw_page(page)
    draw(page, CHARACTERS[character])
    page.get_by_role("button", name="Predict").click()
    expect_answer(page, character)
    expect(page.locator("#top5 li")).to_have_count(5)
    expect(page.locator("#top5 li").first.locator(".bar-label")).to_have_text(character)
    # The 28x28 picture the model saw, as the API returned it.
    expect(page.locator("#model-input")).to_be_visible()
    assert page.locator("#model-input").get_attribute("src").startswith("data:image/png;base64,")
    assert console_errors == []


def test_predicts_by_itself_when_the_pen_lifts(
    page: Page, console_errors: list[str], screenshot_dir: Path
) -> None:
    open_draw_page(page, auto_predict=True)
    draw(page, CHARACTERS["7"])
    expect_answer(page, "7")
    page.screenshot(path=screenshot_dir / "draw.png", full_page=True)
    assert console_errors == []


def test_follows_the_job_when_the_answer_is_not_ready_in_time(
    page: Page, console_errors: list[str]
) -> None:
    def answer_later(route: Route) -> None:
        # What the server says when the worker misses predict_wait_s: 202 and the job to poll.
        response = route.fetch()
        route.fulfill(status=202, json=response.json()["job"])

    page.route("**/api/v1/predict", answer_later)
    open_draw_page(page)
    draw(page, CHARACTERS["L"])
    with page.expect_request(re.compile(r"/api/v1/jobs/[0-9a-f-]{36}\?")):
        page.get_by_role("button", name="Predict").click()
    expect_answer(page, "L")
    assert console_errors == []


def test_clear_empties_the_pad_and_the_result(page: Page, console_errors: list[str]) -> None:
    open_draw_page(page)
    draw(page, CHARACTERS["X"])
    page.get_by_role("button", name="Predict").click()
    expect_answer(page, "X")
    page.get_by_role("button", name="Clear").click()
    assert page.evaluate(INK_PIXELS) == 0
    expect(page.locator("#answer-value")).to_be_hidden()
    expect(page.locator("#details")).to_be_hidden()
    expect(page.locator("#answer-empty")).to_be_visible()
    expect(page.get_by_role("button", name="Undo")).to_be_disabled()
    assert console_errors == []


def test_undo_takes_back_the_last_stroke(page: Page, console_errors: list[str]) -> None:
    open_draw_page(page)
    first, second = CHARACTERS["X"]
    draw(page, [first])
    after_first = page.evaluate(INK_PIXELS)
    draw(page, [second])
    assert page.evaluate(INK_PIXELS) > after_first
    page.keyboard.press("Control+z")
    assert page.evaluate(INK_PIXELS) == after_first
    page.get_by_role("button", name="Undo").click()
    assert page.evaluate(INK_PIXELS) == 0
    assert console_errors == []


def test_predict_on_an_empty_pad_asks_for_a_drawing(page: Page, console_errors: list[str]) -> None:
    open_draw_page(page)
    page.get_by_role("button", name="Predict").click()
    expect(page.locator("#answer-error")).to_have_text("Draw a character first.")
    assert console_errors == []


def test_a_refused_file_shows_the_servers_reason(page: Page, console_errors: list[str]) -> None:
    open_draw_page(page)
    page.locator("#image-file").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"}]
    )
    expect(page.locator("#answer-error")).to_have_text(NOT_AN_IMAGE)
    # The server refuses it with 422, which the browser logs as a failed load; nothing else.
    assert len(console_errors) == 1 and "status of 422" in console_errors[0]


def test_says_so_when_the_server_is_down(page: Page) -> None:
    page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
    open_draw_page(page)
    expect(page.get_by_role("alert")).to_contain_text("Can't reach the server")
    draw(page, CHARACTERS["L"])
    page.get_by_role("button", name="Predict").click()
    expect(page.locator("#answer-error")).to_contain_text("Can't reach the server")
