"""Real parts for the service tests: a fresh Postgres database, a Redis db, a worker process.

In CI (CI=true) a missing Postgres or Redis is a failure; elsewhere those tests skip.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import pytest
import redis
import torch
from fastapi.testclient import TestClient
from PIL import Image

from api.main import create_app
from bench.stack import StackError, database, free_port, service_env
from jobs.queue import make_celery
from jobs.settings import ROOT, Settings
from ml.artifact import InputSpec, LogitCalibration, ModelSpec, save_model
from ml.data import load_split, read_mapping
from ml.model import ARCHITECTURE, CharCNN, Ensemble
from tests.conftest import require

POSTGRES_ADMIN = os.environ.get("HWR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HWR_TEST_REDIS", "redis://127.0.0.1:6379/13")
WORKER_START_S = 90
JOBS = "/api/v1/jobs"
FINISHED = ("succeeded", "failed", "canceled")
# The untrained emnist47 reads every letter drawn as an even pen line as this one, so that a test
# can tell whether the service applied the model's pen-line calibration.
PEN_LINE_LABEL = "X"


def unavailable(reason: str) -> None:
    """Fail in CI, where every service must be present; skip elsewhere."""
    require(False, reason)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def emnist_pngs(emnist_dir: Path) -> list[bytes]:
    """Real EMNIST test letters as PNGs."""
    images = load_split(emnist_dir, "pool47", "test").images[:100]
    return [png_bytes(image) for image in images]


@pytest.fixture(scope="session")
def models_dir(emnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained models with the real label sets (the service tests need no accuracy); the 62
    one is a two-network ensemble, as a shipped model may be, the 47 one has a pen-line
    calibration that reads every pen line as `PEN_LINE_LABEL`."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    for name, split, members in (("emnist47", "pool47", 1), ("emnist62", "pool62", 2)):
        labels, _ = read_mapping(emnist_dir / f"emnist-{split}-mapping.txt")
        pen_lines = LogitCalibration(
            temperature=1, bias=[100.0 * (label == PEN_LINE_LABEL) for label in labels]
        )
        spec = ModelSpec(
            name=name,
            architecture=ARCHITECTURE,
            members=members,
            labels=labels,
            input=InputSpec(mean=0.17, std=0.33),
            metrics={"accuracy": 0.0},
            pen_line_calibration=pen_lines if members == 1 else None,
            created="test",
        )
        network = CharCNN(len(labels)) if members == 1 else Ensemble(len(labels), members)
        save_model(folder / name, network.eval(), spec)
    return folder


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A uniquely named database, migrated to head, dropped at the end of the session."""
    try:
        with database(POSTGRES_ADMIN, "hwr_test") as url:
            yield url
    except StackError as error:
        unavailable(str(error))


@pytest.fixture(scope="session")
def redis_key_prefix() -> Iterator[str]:
    """Keys of this session only, in a Redis db apart from the dev instance's, removed after."""
    prefix = f"hwr-test-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as error:
        unavailable(f"Redis not reachable at {REDIS_URL}: {error}")
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


def start_worker(settings: Settings, log: IO[bytes] | None = None) -> subprocess.Popen:
    """A real Celery worker process (its log to `log` if given), returned once it answers a ping."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.tasks", "worker", "-Q", "cpu",
         "-l", "warning", "--without-gossip", "--without-mingle"],
        cwd=ROOT,
        env=service_env(settings),
        stderr=log,
    )  # fmt: skip
    celery = make_celery(settings)
    deadline = time.monotonic() + WORKER_START_S
    while not celery.control.ping(timeout=0.5, limit=1):
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            pytest.fail("the Celery worker did not start")
    return worker


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def settings(
    postgres_url: str,
    redis_key_prefix: str,
    models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    return Settings(
        database_url=postgres_url,
        broker_url=REDIS_URL,
        broker_key_prefix=redis_key_prefix,
        models_dir=models_dir,
        state_dir=tmp_path_factory.mktemp("state"),
        torch_threads=1,
        worker_concurrency=32,
        max_file_bytes=200_000,
        max_request_bytes=5_000_000,
        max_files=120,
        max_zip_entries=50,
        max_zip_bytes=2_000_000,
        max_image_pixels=4_000_000,
        predict_wait_s=5.0,
        sweep_interval_s=3600,
        rate_limit="",
        worker_metrics_port=free_port(),
    )


@pytest.fixture(scope="session")
def worker(settings: Settings) -> Iterator[subprocess.Popen]:
    process = start_worker(settings)
    yield process
    stop(process)


def wait_until_ready(base_url: str, process: subprocess.Popen) -> None:
    """Poll /readyz until database, broker and a worker all answer."""
    deadline = time.monotonic() + WORKER_START_S
    while True:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{base_url} did not become ready")
        time.sleep(0.5)


def start_gateway(settings: Settings) -> tuple[subprocess.Popen, str]:
    """The gateway as production runs it (uvicorn, a process of its own), once it is ready."""
    url = f"http://127.0.0.1:{free_port()}"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
         "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--log-level", "warning"],
        cwd=ROOT,
        env=service_env(settings),
    )  # fmt: skip
    try:
        wait_until_ready(url, gateway)
    except BaseException:
        stop(gateway)
        raise
    return gateway, url


@pytest.fixture(scope="session")
def gateway_url(settings: Settings, worker: subprocess.Popen) -> Iterator[str]:
    gateway, url = start_gateway(settings)
    yield url
    stop(gateway)


@pytest.fixture(scope="session")
def client(settings: Settings, worker: subprocess.Popen) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def wait_for(client: TestClient, job_id: str, timeout_s: float = 60, **params: int) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(f"{JOBS}/{job_id}", params=params)
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in FINISHED:
            assert "Retry-After" not in response.headers
            return job
        assert response.headers["Retry-After"]
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)
