"""Keeps the service benchmarks from rotting: their quick paths, on tiny sizes, end to end.

Benchmarks are not tests: nothing here checks a timing, only that every section is there with
positive, finite figures. Needs PostgreSQL and Redis (a failure in CI, a skip elsewhere).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import psycopg
import redis

from bench.job_spread import main as job_spread
from bench.run import main
from bench.stack import POSTGRES_ADMIN, REDIS_URL
from tests.conftest import require

TINY = [
    "--quick",
    "--batch-images",
    "40",
    "--canvas-seconds",
    "0.3",
    "--clients",
    "1",
    "8",
    "32",
    "64",
]


def services_reachable() -> None:
    try:
        psycopg.connect(POSTGRES_ADMIN, connect_timeout=3).close()
    except psycopg.OperationalError as error:
        require(False, f"PostgreSQL not reachable at {POSTGRES_ADMIN}: {error}")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.ConnectionError as error:
        require(False, f"Redis not reachable at {REDIS_URL}: {error}")


def positive(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_run_writes_every_section(models_dir: Path, emnist_dir: Path, tmp_path: Path):
    services_reachable()
    out = tmp_path / "service.json"
    main([*TINY, "--models-dir", str(models_dir), "--data-dir", str(emnist_dir), "--out", str(out)])

    results = json.loads(out.read_text())
    for models in results["model_ceiling"]["models"].values():
        assert all(positive(rate) for rate in models.values())
    assert set(results["model_ceiling"]["models"]) == {"emnist47", "emnist62"}
    assert positive(results["preprocessing"]["to_model_input"]["per_cpu_second_median"])
    for design in ("service", "naive"):
        batch = results["batch_job"][design]
        assert batch["images"] == 40 and positive(batch["characters_per_second"])
    assert results["batch_job"]["service"]["status"] == "succeeded"
    assert results["batch_job"]["service"]["mean_batch_size"] == 40
    assert set(results["canvas"]["levels"]) == {"1", "8", "32", "64"}
    for level in results["canvas"]["levels"].values():
        for figures in level.values():
            assert figures["requests"] + figures["late"] + figures["errors"] > 0
            assert all(math.isfinite(figures[p]) for p in ("p50_ms", "p95_ms", "p99_ms"))
        assert positive(level["service"]["mean_batch_size"])
    assert all(positive(phase["wall"]) for phase in results["cpu_seconds"].values())
    assert len(results["targets"]) == 7
    assert all(row["passed"] is not None for row in results["targets"])
    report = out.with_suffix(".md").read_text()
    for section in ("## Targets", "## Model ceiling", "## Batch job", "## Canvas"):
        assert section in report


def test_job_spread_shares_one_job_between_two_workers(
    models_dir: Path, emnist_dir: Path, tmp_path: Path
):
    """bench.job_spread on 40 images split 16 per task: three tasks, two worker processes."""
    services_reachable()
    out = tmp_path / "job_spread.json"
    spread = ["--images", "40", "--repeats", "1", "--workers", "2", "--task-items", "16"]
    job_spread([*spread, "--models-dir", str(models_dir), "--data-dir", str(emnist_dir),
                "--out", str(out)])  # fmt: skip

    setups = json.loads(out.read_text())["setups"]
    assert [(s["workers"], s["task_items"], s["tasks"]) for s in setups] == [(2, 40, 1), (2, 16, 3)]
    for setup in setups:
        (job,) = setup["jobs"]
        assert job["status"] == "succeeded" and setup["errors"] == 0
        assert positive(setup["characters_per_second"])
    assert "| 2 | 16 | 3 |" in out.with_suffix(".md").read_text()
