"""The real stack over HTTP, shared by every test package that needs one (browser, CLI).

A fresh Postgres database, its own Redis db, a real Celery worker and the gateway served by
uvicorn, with the trained models. Registered once in tests/conftest.py so that a pytest session
starts one such stack, however many packages use it. Set HWR_TEST_BASE_URL to test a stack that
is already running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from jobs.settings import Settings
from tests.conftest import require
from tests.service.conftest import (  # noqa: F401  (importing a fixture makes it usable here)
    postgres_url,
    start_gateway,
    start_worker,
    stop,
    unavailable,
)

# Not the service tests' Redis db: their worker (untrained models, another database) listens on
# the same queue name and would take our jobs when both run in one pytest session.
REDIS_URL = os.environ.get("HWR_TEST_BROWSER_REDIS", "redis://127.0.0.1:6379/14")


@pytest.fixture(scope="session")
def browser_redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.ConnectionError as error:
        unavailable(f"Redis not reachable at {REDIS_URL}: {error}")
    yield REDIS_URL
    client.flushdb()


@pytest.fixture(scope="session")
def stack_settings(
    request: pytest.FixtureRequest, browser_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The shipped models, lightly threaded: the tests share the machine with other work."""
    model = Settings().models_dir / "emnist47" / "model.json"
    require(model.is_file(), f"the trained model {model.parent} is absent")
    return Settings(
        database_url=request.getfixturevalue("postgres_url"),
        broker_url=browser_redis_url,
        state_dir=tmp_path_factory.mktemp("state"),
        torch_threads=1,
        worker_concurrency=4,
        sweep_interval_s=3600,
        rate_limit="",
    )


@pytest.fixture(scope="session")
def base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The gateway's address, with a worker ready behind it."""
    if external := os.environ.get("HWR_TEST_BASE_URL"):
        yield external.rstrip("/")
        return
    settings: Settings = request.getfixturevalue("stack_settings")
    worker = start_worker(settings)
    try:
        gateway, url = start_gateway(settings)
    except BaseException:
        stop(worker)
        raise
    yield url
    stop(gateway)
    stop(worker)
