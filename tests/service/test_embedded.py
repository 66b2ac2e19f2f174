"""The embedded default end to end: SQLite, the filesystem broker, and scripts/launch.py
supervising a real gateway and worker, as `bash scripts/run.sh` starts them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.stack import migrate
from jobs.settings import ROOT, Settings
from tests.service.conftest import free_port, png_bytes, service_env, wait_until_ready


@pytest.fixture(scope="module")
def embedded(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("var"),
        models_dir=models_dir,
        torch_threads=1,
        worker_concurrency=4,
    )
    assert settings.database_url.startswith("sqlite") and settings.broker_url.startswith(
        "filesystem://"
    )
    migrate(settings.database_url)
    port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "scripts/launch.py", "--port", str(port)],
        cwd=ROOT,
        env=service_env(settings),
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready(base_url, launcher)
    yield base_url
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(30) == 0


def test_embedded_job_and_canvas(embedded: str):
    digit = png_bytes(np.pad(np.full((12, 4), 255, dtype=np.uint8), 8))
    files = [("files", (f"{i}.png", digit)) for i in range(3)] + [("files", ("x.png", b"no"))]
    with httpx.Client(base_url=embedded, timeout=30) as client:
        created = client.post("/api/v1/jobs", files=files)
        assert created.status_code == 202, created.text
        job_url = created.headers["Location"]
        for _ in range(300):
            job = client.get(job_url).json()
            if job["status"] == "succeeded":
                break
            time.sleep(0.2)
        assert job["progress"] == {"total": 4, "done": 4, "failed": 1}
        canvas = client.post("/api/v1/predict", files={"file": ("c.png", digit)})
        assert canvas.status_code == 200, canvas.text
        assert canvas.json()["result"]["status"] == "succeeded"
