"""Each shipped model still scores what its model.json claims on its own pool's test split."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ml import load_model
from ml.data import load_split
from ml.evaluate import CHECK_SAMPLE, evaluate

TOLERANCE = 0.01


@pytest.mark.parametrize("name", ["emnist47", "emnist62"])
def test_shipped_model_matches_its_recorded_accuracy(name: str, emnist_dir: Path) -> None:
    """Within 1 point of the figure recorded for the same first images (weights, loader and
    normalization unchanged), and consistent with the whole split's accuracy: 2,000 images
    carry a sampling error of about 0.75 points, so that check allows four standard errors."""
    spec = load_model(name).spec
    recorded = spec.metrics["test"]
    data = load_split(emnist_dir, spec.training["split"], "test")
    report = evaluate(name, data, limit=CHECK_SAMPLE)
    assert report["images"] == CHECK_SAMPLE
    assert abs(report["accuracy"] - recorded["first_images_accuracy"]["accuracy"]) <= TOLERANCE
    whole = recorded["accuracy"]
    standard_error = math.sqrt(whole * (1 - whole) / CHECK_SAMPLE)
    assert abs(report["accuracy"] - whole) <= 4 * standard_error, (report["accuracy"], whole)
