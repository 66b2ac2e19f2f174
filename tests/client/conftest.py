"""Fixtures for the client tests: a fake service, a client bound to it, and image folders."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from client import cli
from client.api import JobsClient
from tests.client.fake_service import FakeService

FAKE_URL = "http://hwr.test"


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def api(service: FakeService) -> Iterator[JobsClient]:
    with JobsClient(FAKE_URL, transport=service.transport()) as client:
        yield client


@pytest.fixture
def cli_service(service: FakeService, monkeypatch: pytest.MonkeyPatch) -> FakeService:
    """The `hwr` commands talk to the fake service whatever URL they are given."""
    monkeypatch.setattr(cli, "JobsClient", partial(JobsClient, transport=service.transport()))
    return service


@pytest.fixture
def closed_url() -> str:
    """A localhost URL where nothing listens: a port the OS just handed out and took back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two images, a zip and a stray text file, one image in a subfolder."""
    folder = tmp_path / "scans"
    (folder / "more").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"png bytes")
    (folder / "more" / "b.JPG").write_bytes(b"jpeg bytes" * 10_000)
    (folder / "c.zip").write_bytes(b"zip bytes")
    (folder / "notes.txt").write_text("not sent")
    return folder
