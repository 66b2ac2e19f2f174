"""Training writes a valid artifact; the predictor returns sorted, normalized top-k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ml import Predictor, load_model
from ml.artifact import ModelArtifactError
from ml.train import main as train_main


def test_one_epoch_writes_a_loadable_artifact(trained: Path) -> None:
    loaded = load_model(trained)
    spec = json.loads((trained / "model.json").read_text())
    assert loaded.spec.labels == ["I", "-", "O"]
    assert spec["training"]["split"] == "tiny"
    assert set(spec["training"]["files"]) == {
        "emnist-tiny-train-images-idx3-ubyte.gz",
        "emnist-tiny-train-labels-idx1-ubyte.gz",
        "emnist-tiny-mapping.txt",
    }
    assert all(len(digest) == 64 for digest in spec["training"]["files"].values())
    assert 0 <= spec["metrics"]["test"]["accuracy"] <= 1
    assert (trained / "report.json").is_file() and (trained / "report.png").is_file()


def test_predictor_returns_sorted_topk_summing_to_one(trained: Path) -> None:
    loaded = load_model(trained)
    inputs = loaded.spec.input.normalize(np.random.default_rng(1).random((70, 28, 28)) * 255)
    predictor = Predictor(loaded, threads=1, chunk_size=32)
    probabilities = predictor.probabilities(inputs.astype(np.float32))
    assert probabilities.shape == (70, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    predictions = predictor.predict(inputs.astype(np.float32), k=5)
    assert len(predictions) == 70
    for row in predictions:
        assert len(row) == 3
        assert [p for _, p in row] == sorted((p for _, p in row), reverse=True)
        assert {c for c, _ in row} == {"I", "-", "O"}


def test_only_pen_lines_are_read_with_the_pen_line_calibration(trained: Path) -> None:
    loaded = load_model(trained)
    calibration = loaded.spec.pen_line_calibration
    assert calibration is not None and len(calibration.bias) == 3
    inputs = loaded.spec.input.normalize(np.random.default_rng(2).random((6, 28, 28)) * 255)
    predictor = Predictor(loaded, threads=1, chunk_size=4)
    pen_lines = np.array([True, False, False, True, True, False])
    plain = predictor.probabilities(inputs.astype(np.float32))
    mixed = predictor.probabilities(inputs.astype(np.float32), pen_lines)
    np.testing.assert_array_equal(mixed[~pen_lines], plain[~pen_lines])
    expected = calibration.apply(torch.from_numpy(np.log(plain[pen_lines]))).softmax(dim=1)
    np.testing.assert_allclose(mixed[pen_lines], expected.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="pen_lines must be 6 booleans"):
        predictor.probabilities(inputs.astype(np.float32), pen_lines[:5])


def test_a_pen_line_calibration_must_have_a_bias_per_label(trained: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "weights.pt").write_bytes((trained / "weights.pt").read_bytes())
    spec = json.loads((trained / "model.json").read_text())
    spec["pen_line_calibration"]["bias"] = [0.0, 0.0]
    (broken / "model.json").write_text(json.dumps(spec))
    with pytest.raises(ModelArtifactError, match="one bias per label"):
        load_model(broken)


def test_predictor_rejects_wrong_shape(trained: Path) -> None:
    predictor = Predictor(load_model(trained), threads=1)
    with pytest.raises(ValueError, match=r"inputs must be \(N, 28, 28\)"):
        predictor.probabilities(np.zeros((2, 14, 14), dtype=np.float32))


def test_weights_that_do_not_fit_the_spec_are_refused(trained: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "weights.pt").write_bytes((trained / "weights.pt").read_bytes())
    spec = json.loads((trained / "model.json").read_text())
    spec["labels"], spec["pen_line_calibration"] = ["a", "b", "c", "d"], None
    (broken / "model.json").write_text(json.dumps(spec))
    with pytest.raises(ModelArtifactError, match="does not fit model.json"):
        load_model(broken)


def test_unknown_model_name() -> None:
    with pytest.raises(ModelArtifactError, match="no model folder"):
        load_model("no-such-model")


def test_a_second_round_starts_from_an_earlier_model(trained: Path, tmp_path: Path) -> None:
    from tests.conftest import synthetic_glyphs, write_split

    images, labels = synthetic_glyphs(200)
    write_split(tmp_path, "tiny", images, labels, "I-O")
    args = ["--split", "tiny", "--data-dir", str(tmp_path), "--epochs", "1", "--batch-size", "32",
            "--threads", "1", "--init-from", str(trained), "--select-by", "accuracy"]  # fmt: skip
    train_main([*args, "--out", str(tmp_path / "again")])
    spec = json.loads((tmp_path / "again" / "model.json").read_text())
    assert spec["training"]["config"]["init_from"] == str(trained)
    assert set(spec["training"]["best"]) == {"epoch", "val_accuracy", "val_macro_accuracy"}

    write_split(tmp_path, "other", images, labels, "ABC")
    other = ["--split", "other", "--out", str(tmp_path / "other")]
    with pytest.raises(SystemExit, match="labels differ"):
        train_main([*args[2:], *other])
