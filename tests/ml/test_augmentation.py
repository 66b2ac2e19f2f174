"""Training augmentations change what they claim to and nothing else."""

from __future__ import annotations

import numpy as np
import torch

from ml.pen_lines import redraw_as_pen
from ml.preprocess import skeleton


def bars(widths: list[int]) -> torch.Tensor:
    """Vertical white bars of the given widths on 28x28 black, one image each."""
    batch = torch.zeros(len(widths), 1, 28, 28)
    for index, width in enumerate(widths):
        batch[index, 0, 4:24, 14 - width // 2 : 14 - width // 2 + width] = 255
    return batch


def test_pen_redraw_gives_thin_and_fat_strokes_one_even_width() -> None:
    batch = bars([1, 2, 6, 10])
    redrawn = redraw_as_pen(batch, 1.0, torch.Generator().manual_seed(0))
    ink_per_row = (redrawn[:, 0, 10:18] / 255).sum(dim=2)
    assert ((ink_per_row > 2) & (ink_per_row < 5)).all(), ink_per_row
    assert (ink_per_row.std(dim=1) < 0.01).all()


def test_pen_redraw_at_fraction_zero_changes_nothing() -> None:
    batch = bars([3, 7])
    assert torch.equal(redraw_as_pen(batch, 0.0, torch.Generator().manual_seed(0)), batch)


def test_skeleton_of_a_stack_is_the_skeleton_of_each() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((5, 20, 20)) < 0.6
    assert np.array_equal(skeleton(masks), np.stack([skeleton(mask) for mask in masks]))
