"""Borrowed training images with merged labels, partial-label loss and distillation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ml.data import EmnistSplit
from ml.extra_data import borrow, candidate_classes
from ml.train import distillation_loss, partial_label_loss
from ml.train import main as train_main
from tests.conftest import synthetic_glyphs, write_split


def names(mask: np.ndarray, ours: list[str]) -> list[set[str]]:
    return [{ours[i] for i in np.flatnonzero(row)} for row in mask]


def test_a_merged_letter_stands_for_both_cases_only_when_the_other_case_is_missing() -> None:
    ours = ["0", "A", "C", "a", "c", "x"]
    theirs = ["0", "A", "C", "a", "Q"]
    assert names(candidate_classes(theirs, ours), ours) == [
        {"0"},
        {"A"},
        {"C", "c"},
        {"a"},
        set(),
    ]


def test_borrow_drops_images_we_hold_and_labels_we_cannot_map() -> None:
    rng = np.random.default_rng(0)
    ours = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    new = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    extra = EmnistSplit(
        images=np.concatenate([ours[:2], new]),
        labels=np.array([0, 1, 0, 1, 2, 0]),
        characters=["O", "1", "Q"],
        files=[],
    )
    held = EmnistSplit(ours, np.zeros(5, dtype=np.int64), ["O", "o", "1"], [])
    borrowed = borrow(extra, ["O", "o", "1"], [held])
    assert borrowed.dropped_in_our_split == 2
    assert borrowed.dropped_unmappable == 1
    assert np.array_equal(borrowed.images, new[[0, 1, 3]])
    assert names(borrowed.candidates, ["O", "o", "1"]) == [{"O", "o"}, {"1"}, {"O", "o"}]


def test_partial_label_loss_is_cross_entropy_of_the_candidates_summed() -> None:
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    one_hot = F.one_hot(labels, 4).bool()
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert torch.allclose(partial_label_loss(logits, one_hot, 0.1), expected)

    pair = torch.zeros(1, 4, dtype=torch.bool)
    pair[0, :2] = True
    p = torch.softmax(logits[:1], dim=1)[0]
    assert torch.allclose(partial_label_loss(logits[:1], pair, 0.0), -torch.log(p[0] + p[1]))


def test_distillation_loss_is_zero_only_when_the_teacher_agrees() -> None:
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    assert float(distillation_loss(logits, logits, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(logits, -logits, 2.0)) > 0.1


def test_training_borrows_a_coarser_split_and_learns_from_a_teacher(
    trained: Path, tmp_path: Path
) -> None:
    images, labels = synthetic_glyphs(200)
    write_split(tmp_path, "tiny", images, labels, "I-O")
    fresh, fresh_labels = synthetic_glyphs(60, seed=1)
    fresh[:, 27, 27] = np.arange(1, 61)  # the glyphs repeat; a corner pixel makes each new
    coarse_images = np.concatenate([images[:20], fresh])
    coarse_labels = np.concatenate([labels[:20], fresh_labels])
    write_split(tmp_path, "coarse", coarse_images, coarse_labels, "i-o")
    out = tmp_path / "student"
    train_main(
        ["--split", "tiny", "--data-dir", str(tmp_path), "--epochs", "1", "--batch-size", "32",
         "--threads", "1", "--val-fraction", "0.1", "--extra-split", "coarse",
         "--teacher", str(trained), "--out", str(out)]
    )  # fmt: skip
    training = json.loads((out / "model.json").read_text())["training"]
    assert training["extra"] == {
        "split": "coarse",
        "images": 60,
        "dropped_in_our_split": 20,
        "dropped_unmappable": 0,
    }
    assert training["train_images"] + training["validation_images"] == 200 + 60
    assert "emnist-coarse-train-images-idx3-ubyte.gz" in training["files"]
    assert training["config"]["teacher"] == str(trained)
