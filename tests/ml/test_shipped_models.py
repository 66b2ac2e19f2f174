"""Each shipped model still scores what its model.json claims on its own pool's test split."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml import load_model
from ml.data import load_split
from ml.evaluate import evaluate

SAMPLE = 2000
TOLERANCE = 0.01


@pytest.mark.parametrize("name", ["emnist47", "emnist62"])
def test_shipped_model_matches_its_recorded_accuracy(name: str, emnist_dir: Path) -> None:
    spec = load_model(name).spec
    data = load_split(emnist_dir, spec.training["split"], "test")
    report = evaluate(name, data, limit=SAMPLE)
    recorded = spec.metrics["test"]["accuracy"]
    assert report["images"] == SAMPLE
    assert abs(report["accuracy"] - recorded) <= TOLERANCE, (report["accuracy"], recorded)
