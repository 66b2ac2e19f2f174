"""Both pages offer the models the server serves, start on its default, and remember a choice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from jobs.settings import Settings
from tests.service.conftest import start_gateway, stop

SPARE = "emnist47-spare"


@pytest.fixture(scope="module")
def spare_model_url(
    stack_settings: Settings, base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A second gateway on the shared stack that serves emnist47 and a model the pages do not
    list by themselves (its default), and not emnist62."""
    models = tmp_path_factory.mktemp("models")
    (models / "emnist47").symlink_to(stack_settings.models_dir / "emnist47")
    (models / SPARE).symlink_to(stack_settings.models_dir / "emnist47")
    settings = stack_settings.model_copy(
        update={"models_dir": models, "model_names": ["emnist47", SPARE], "default_model": SPARE}
    )
    gateway, url = start_gateway(settings)
    yield url
    stop(gateway)


@pytest.mark.parametrize("path", ["/", "/batch"])
def test_the_model_list_is_the_servers(browser: Browser, spare_model_url: str, path: str) -> None:
    context = browser.new_context(base_url=spare_model_url)
    page = context.new_page()
    page.goto(path)
    select = page.locator("#model")
    expect(select.locator(f'option[value="{SPARE}"]')).to_have_text(f"{SPARE} (47 classes)")
    expect(select).to_have_value(SPARE)
    absent = select.locator('option[value="emnist62"]')
    expect(absent).to_be_disabled()
    expect(absent).to_contain_text("(not installed)")

    select.select_option("emnist47")
    page.reload()
    expect(select.locator(f'option[value="{SPARE}"]')).to_be_attached()
    expect(select).to_have_value("emnist47")
    context.close()
