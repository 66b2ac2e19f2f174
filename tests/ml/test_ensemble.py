"""Ensembles: members combine into one model folder that answers with their mean logits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ml import Predictor, load_model
from ml.ensemble import main as ensemble_main
from ml.model import Ensemble
from ml.train import main as train_main
from tests.ml.conftest import combined, data_dir_of


def variant(trained: Path, folder: Path, **input_changes: float | list[str]) -> Path:
    """A copy of `trained` whose model.json says something else about its input or labels."""
    shutil.copytree(trained, folder)
    spec = json.loads((folder / "model.json").read_text())
    labels = input_changes.pop("labels", None)
    spec["labels"] = labels or spec["labels"]
    spec["input"].update(input_changes)
    (folder / "model.json").write_text(json.dumps(spec))
    return folder


def raw_pixels(count: int) -> np.ndarray:
    return np.random.default_rng(3).random((count, 28, 28)) * 255


def test_members_combine_into_a_model_folder_with_its_own_report(
    trained: Path, tmp_path: Path
) -> None:
    other = variant(trained, tmp_path / "other", mean=0.2, std=0.3)
    out = combined([trained, other], tmp_path / "both")
    loaded = load_model(out)
    assert isinstance(loaded.network, Ensemble) and loaded.spec.members == 2
    assert loaded.spec.training["split"] == "tiny"
    assert len(loaded.spec.training["members"]) == 2
    assert 0 <= loaded.spec.metrics["test"]["accuracy"] <= 1
    assert (out / "report.json").is_file() and (out / "report.png").is_file()


def test_the_ensemble_answers_with_the_mean_of_its_members_logits(
    trained: Path, tmp_path: Path
) -> None:
    """Each member sees pixels normalized as its own model.json says."""
    other = variant(trained, tmp_path / "other", mean=0.25, std=0.4)
    out = combined([trained, other], tmp_path / "both")
    pixels = torch.from_numpy(raw_pixels(20)).float().unsqueeze(1)
    first, second, both = load_model(trained), load_model(other), load_model(out)
    with torch.no_grad():
        expected = (
            first.network(first.spec.input.normalize(pixels))
            + second.network(second.spec.input.normalize(pixels))
        ) / 2
        answered = both.network(both.spec.input.normalize(pixels))
    torch.testing.assert_close(answered, expected, atol=1e-4, rtol=1e-4)
    assert both.spec.input == first.spec.input


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"labels": ["a", "b", "c"]}, "labels differ"), ({"scale": 1.0}, "input scale differ")],
)
def test_members_that_do_not_fit_together_are_refused(
    trained: Path, tmp_path: Path, changes: dict, message: str
) -> None:
    other = variant(trained, tmp_path / "other", **changes)
    with pytest.raises(SystemExit, match=message):
        ensemble_main([str(trained), str(other), "--out", str(tmp_path / "both")])
    assert not (tmp_path / "both").exists()


def test_an_ensemble_is_not_a_member_nor_a_starting_point(trained: Path, tmp_path: Path) -> None:
    out = combined([trained, trained], tmp_path / "both")
    with pytest.raises(SystemExit, match="itself an ensemble"):
        ensemble_main([str(out), str(trained), "--out", str(tmp_path / "three")])
    with pytest.raises(SystemExit, match="an ensemble of 2"):
        again = ["--init-from", str(out), "--out", str(tmp_path / "again")]
        train_main(["--split", "tiny", "--data-dir", data_dir_of(trained), "--epochs", "1", *again])


def test_bfloat16_reads_as_float32_does(trained: Path) -> None:
    loaded = load_model(trained)
    inputs = loaded.spec.input.normalize(raw_pixels(64)).astype(np.float32)
    full = Predictor(loaded, device="cpu", threads=1, precision="float32")
    half = Predictor(loaded, device="cpu", threads=1, precision="bfloat16")
    assert half.dtype == torch.bfloat16 and full.dtype == torch.float32
    np.testing.assert_allclose(half.probabilities(inputs), full.probabilities(inputs), atol=0.05)
