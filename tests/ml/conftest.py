"""A model trained for one epoch on synthetic glyphs, and helpers around it, for the ml tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml.ensemble import main as ensemble_main
from ml.train import main as train_main
from tests.conftest import synthetic_glyphs, write_split


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    images, labels = synthetic_glyphs(400)
    write_split(data_dir, "tiny", images, labels, "I-O")
    out = tmp_path_factory.mktemp("models") / "tiny-model"
    train_main(
        ["--split", "tiny", "--out", str(out), "--data-dir", str(data_dir), "--epochs", "1",
         "--batch-size", "32", "--val-fraction", "0.1", "--threads", "1"]
    )  # fmt: skip
    return out


def data_dir_of(trained: Path) -> str:
    return json.loads((trained / "model.json").read_text())["training"]["config"]["data_dir"]


def combined(members: list[Path], out: Path) -> Path:
    """The ensemble of `members`, built by the command on their own split's data."""
    ensemble_main([*map(str, members), "--out", str(out), "--data-dir", data_dir_of(members[0])])
    return out
