"""What operators see: Prometheus metrics that move as a job runs, and JSON logs with job ids."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from jobs.settings import Settings
from ml.data import load_split
from tests.service.conftest import free_port, png_bytes, start_worker, stop

JOBS = "/api/v1/jobs"
IMAGES = 5


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text page, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(page: dict, name: str, **labels: str) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def observed(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A worker of its own (own broker keys, metrics port and log file) and a gateway on it."""
    own = settings.model_copy(
        update={
            "broker_key_prefix": f"hwr-test-{uuid.uuid4().hex[:8]}:",
            "worker_metrics_port": free_port(),
            "log_format": "json",
            "log_level": "INFO",
        }
    )
    log_path = tmp_path_factory.mktemp("logs") / "worker.log"
    with log_path.open("wb") as log:
        worker = start_worker(own, log)
        try:
            with TestClient(create_app(own)) as client:
                yield own, client, log_path
        finally:
            stop(worker)


@pytest.fixture(scope="module")
def letters(emnist_dir: Path) -> list[bytes]:
    return [png_bytes(image) for image in load_split(emnist_dir, "pool47", "test").images[:IMAGES]]


def run_job(client: TestClient, letters: list[bytes]) -> str:
    files = [("files", (f"{i}.png", png, "image/png")) for i, png in enumerate(letters)]
    job_id = client.post(JOBS, files=files).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"{JOBS}/{job_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.2)
    return job_id


def test_gateway_and_worker_metrics_move_as_a_job_runs(observed, letters: list[bytes]):
    settings, client, _ = observed
    worker_metrics = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
    gateway_before = samples(client.get("/metrics").text)
    worker_before = samples(httpx.get(worker_metrics).text)

    run_job(client, letters)

    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    gateway_after = samples(response.text)
    worker_after = samples(httpx.get(worker_metrics).text)

    def grew(before: dict, after: dict, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew(gateway_before, gateway_after, "hwr_jobs", status="succeeded") >= 1
    posted = {"method": "POST", "route": "/api/v1/jobs", "status": "202"}
    assert grew(gateway_before, gateway_after, "hwr_http_requests_total", **posted) == 1
    polls = {"method": "GET", "route": "/api/v1/jobs/{job_id}"}
    assert grew(gateway_before, gateway_after, "hwr_http_request_duration_seconds_count", **polls)
    assert ("hwr_queue_depth", frozenset({"queue": "cpu"}.items())) in gateway_after

    items = {"model": "emnist47", "status": "succeeded"}
    assert grew(worker_before, worker_after, "hwr_worker_items_total", **items) == IMAGES
    model = {"model": "emnist47"}
    assert grew(worker_before, worker_after, "hwr_worker_batch_size_sum", **model) == IMAGES
    assert grew(worker_before, worker_after, "hwr_worker_inference_seconds_count", **model) >= 1
    assert value(worker_after, "hwr_worker_model_load_seconds", **model) > 0


def test_worker_log_lines_are_json_and_carry_the_job_id(observed, letters: list[bytes]):
    _, client, log_path = observed
    job_id = run_job(client, letters)
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
        events = [json.loads(line) for line in lines]
        mine = [event["message"] for event in events if event.get("job_id") == job_id]
        if "job done" in mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine[0] == "job started"
    assert "job done" in mine
    assert all({"asctime", "level", "name", "message"} <= event.keys() for event in events)
