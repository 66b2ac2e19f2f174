"""Calibration: a temperature and class biases fit on held-out data, folded into the last layer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ml import load_model
from ml.artifact import LogitCalibration
from ml.calibrate import fit, fold
from ml.calibrate import main as calibrate_main
from ml.metrics import macro_accuracy
from ml.model import CharCNN
from ml.train import main as train_main
from tests.ml.conftest import combined, data_dir_of


def sampled(true_logits: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Labels drawn from the distribution the logits describe."""
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(F.softmax(true_logits, dim=1), 1, generator=generator).squeeze(1)


def test_the_fit_undoes_a_known_temperature_and_shift() -> None:
    true_logits = 3 * torch.randn(6000, 5, generator=torch.Generator().manual_seed(1))
    labels = sampled(true_logits)
    shift = torch.tensor([1.0, -1.0, 0.5, 0.0, -0.5])
    observed = 2.5 * (true_logits - shift)
    calibration = fit(observed, labels, balanced=False)
    assert calibration.temperature == pytest.approx(2.5, rel=0.1)
    bias = torch.tensor(calibration.bias)
    centred = bias - bias.mean()
    assert torch.allclose(centred, shift - shift.mean(), atol=0.2)
    before = F.cross_entropy(observed, labels)
    assert F.cross_entropy(calibration.apply(observed), labels) < before


def test_a_balanced_fit_gives_rare_classes_their_due() -> None:
    """On imbalanced data the per-image fit favours the common class; the balanced one doesn't."""
    generator = torch.Generator().manual_seed(2)
    labels = torch.cat([torch.zeros(1800), torch.ones(100), torch.full((100,), 2)]).long()
    true_logits = 1.5 * F.one_hot(labels, 3) + torch.randn(len(labels), 3, generator=generator)
    plain = fit(true_logits, labels, balanced=False).apply(true_logits).argmax(1).numpy()
    balanced = fit(true_logits, labels, balanced=True).apply(true_logits).argmax(1).numpy()
    truth = labels.numpy()
    assert macro_accuracy(truth, balanced, 3) > macro_accuracy(truth, plain, 3) + 0.05
    assert (plain == truth).mean() > (balanced == truth).mean()


def test_folding_makes_the_network_compute_the_calibrated_logits() -> None:
    network = CharCNN(4).eval()
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    calibration = LogitCalibration(temperature=0.7, bias=[0.3, -0.2, 0.0, 1.1])
    with torch.no_grad():
        expected = calibration.apply(network(x))
        fold(network, calibration)
        assert torch.allclose(network(x), expected, atol=1e-5)


def test_training_ends_calibrated_on_its_validation_part(trained: Path) -> None:
    training = json.loads((trained / "model.json").read_text())["training"]
    record = training["calibration"]
    assert record["temperature"] > 0
    assert record["validation_images"] == training["validation_images"]
    assert record["fit"] == "class-balanced likelihood"  # the run kept its best macro accuracy
    pen_lines = training["pen_line_calibration"]
    assert pen_lines["temperature"] == pytest.approx(
        load_model(trained).spec.pen_line_calibration.temperature, abs=1e-4
    )
    assert 0 < pen_lines["validation_images"] <= training["validation_images"]
    with pytest.raises(SystemExit, match="already calibrated"):
        calibrate_main([str(trained), "--data-dir", data_dir_of(trained)])


def earlier_copy(trained: Path, folder: Path, fit: str) -> dict:
    """A copy of `trained` as a model made before the `fit` record existed; its model.json."""
    shutil.copytree(trained, folder)
    spec = json.loads((folder / "model.json").read_text())
    del spec["training"][fit]
    spec["pen_line_calibration"], spec["metrics"] = None, {}
    (folder / "model.json").write_text(json.dumps(spec))
    return spec


def test_the_command_adds_a_pen_line_calibration_and_leaves_the_network(
    trained: Path, tmp_path: Path
) -> None:
    earlier = tmp_path / "earlier"
    spec = earlier_copy(trained, earlier, "pen_line_calibration")
    weights_before = (earlier / "weights.pt").read_bytes()

    calibrate_main([str(earlier), "--data-dir", data_dir_of(trained), "--pen-lines"])
    added, fit_in_training = (
        load_model(model).spec.pen_line_calibration for model in (earlier, trained)
    )
    assert added.temperature == pytest.approx(fit_in_training.temperature, rel=1e-3)
    np.testing.assert_allclose(added.bias, fit_in_training.bias, atol=1e-3)
    loaded = load_model(earlier)
    assert loaded.spec.training["calibration"] == spec["training"]["calibration"]
    assert (earlier / "weights.pt").read_bytes() == weights_before


def test_a_second_round_validates_on_what_the_first_held_out(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "second"
    train_main(
        ["--split", "tiny", "--out", str(out), "--data-dir", data_dir_of(trained), "--epochs", "1",
         "--batch-size", "32", "--val-fraction", "0.3", "--seed", "5", "--threads", "1",
         "--init-from", str(trained)]
    )  # fmt: skip
    first, second = (load_model(model).spec.training for model in (trained, out))
    assert second["config"]["val_seed"] == first["config"]["seed"] != second["config"]["seed"]
    assert second["config"]["val_fraction"] == first["config"]["val_fraction"]
    assert second["validation_images"] == first["validation_images"]
    assert second["calibration"]["validation_images"] == first["validation_images"]


def test_the_command_calibrates_a_model_trained_before_calibration(
    trained: Path, tmp_path: Path
) -> None:
    earlier = tmp_path / "earlier"
    earlier_copy(trained, earlier, "calibration")
    weights_before = (earlier / "weights.pt").read_bytes()
    with pytest.raises(SystemExit, match="without --pen-lines first"):
        calibrate_main([str(earlier), "--data-dir", data_dir_of(trained), "--pen-lines"])

    calibrate_main([str(earlier), "--data-dir", data_dir_of(trained), "--target", "accuracy"])
    loaded = load_model(earlier)
    assert loaded.spec.training["calibration"]["fit"] == "likelihood"
    assert (earlier / "weights.pt").read_bytes() != weights_before
    assert 0 <= loaded.spec.metrics["test"]["accuracy"] <= 1
    assert np.isfinite(loaded.spec.training["calibration"]["temperature"])
    assert loaded.spec.pen_line_calibration is not None


def test_an_ensemble_is_calibrated_through_its_members(trained: Path, tmp_path: Path) -> None:
    both = combined([trained, trained], tmp_path / "both")
    with pytest.raises(SystemExit, match="calibrate its members"):
        calibrate_main([str(both), "--data-dir", data_dir_of(trained)])
