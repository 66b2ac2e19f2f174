"""Settings read from the environment as people write them, and refused when no worker could
follow them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs.settings import Settings


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("emnist47,emnist62", ["emnist47", "emnist62"]),
        (" emnist62 ", ["emnist62"]),
        ('["emnist47", "emnist62"]', ["emnist47", "emnist62"]),
        ("", []),
    ],
)
def test_list_settings_read_commas_and_json(
    monkeypatch: pytest.MonkeyPatch, written: str, read: list[str]
) -> None:
    monkeypatch.setenv("HWR_MODEL_NAMES", written)
    monkeypatch.setenv("HWR_CORS_ORIGINS", written)
    settings = Settings()
    assert settings.model_names == read
    assert settings.cors_origins == read


def test_broken_json_list_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWR_API_KEY_HASHES", '["abc",')
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("queue", ["GPU", "gpus", ""])
def test_a_queue_no_worker_consumes_is_refused(monkeypatch: pytest.MonkeyPatch, queue: str) -> None:
    monkeypatch.setenv("HWR_JOB_QUEUE", queue)
    with pytest.raises(ValidationError, match="job_queue"):
        Settings()
