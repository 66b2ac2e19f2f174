"""Keeps the soak from rotting: its --quick run end to end on the small untrained models.

Thirty seconds say nothing about memory over time, so only the soak's correctness is checked
here: every request answered, every accepted job in the database and succeeded, no 5xx, and a
memory figure for each sample. Needs PostgreSQL and Redis (a failure in CI, a skip elsewhere).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.soak import QUICK, main
from tests.bench.test_bench_quick import positive, services_reachable


def test_quick_soak_loses_nothing_and_samples_memory(
    models_dir: Path, emnist_dir: Path, tmp_path: Path
):
    services_reachable()
    out = tmp_path / "soak.json"
    results = main(
        [
            "--quick",
            "--models-dir",
            str(models_dir),
            "--data-dir",
            str(emnist_dir),
            "--out",
            str(out),
        ]
    )

    assert json.loads(out.read_text()) == results
    requests, jobs = results["requests"], results["jobs"]
    assert requests["canvas_answered"] + requests["canvas_late"] == QUICK.canvas_requests
    assert jobs["accepted"] == QUICK.canvas_requests + QUICK.batch_jobs
    assert jobs["succeeded"] == jobs["in_database"] == jobs["accepted"]
    assert jobs["lost"] == jobs["unacknowledged"] == 0
    assert requests["server_errors"] == requests["broken"] == 0
    assert len(results["samples"]) > QUICK.seconds / QUICK.sample_every_s / 2
    for figures in results["memory"].values():
        assert positive(figures["after_warmup_mb"]) and positive(figures["end_mb"])
    report = out.with_suffix(".md").read_text()
    for section in ("# Soak", "## Traffic", "## Memory"):
        assert section in report
