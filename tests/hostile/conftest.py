"""The service tests' real stack (uvicorn gateway, Celery worker, Postgres, Redis), small limits.

Small limits make every hostile file cheap to build and quick to refuse.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml.data import load_split
from tests.service.conftest import (  # noqa: F401  (importing a fixture makes it usable here)
    gateway_url,
    models_dir,
    png_bytes,
    postgres_url,
    redis_key_prefix,
    settings,
    worker,
)


@pytest.fixture(scope="session")
def http(gateway_url: str) -> Iterator[httpx.Client]:  # noqa: F811
    """A client of the gateway over loopback, patient enough for a busy two-core machine."""
    with httpx.Client(base_url=gateway_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def good_png(emnist_dir: Path) -> bytes:
    """A real EMNIST letter: it must still be read beside whatever hostile file shares its job."""
    return png_bytes(load_split(emnist_dir, "pool47", "test").images[0])
