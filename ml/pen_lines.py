"""Letters redrawn as a canvas pen draws them: an even line along EMNIST's centre line.

EMNIST strokes swell and thin with the pen's pressure; a canvas stroke never does. Training mixes
such letters in (`ml.train --pen-fraction`) and calibration fits how a model should read them
once preprocessing has framed them (`ml.calibrate`); both draw them here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ml.image_errors import PreprocessError
from ml.preprocess import Letter, array_to_letter, skeleton

# Pen lines are drawn at twice the input's size with a disk of one of these radii, so after
# reduction they are 2.5, 3.5 or 4.5 pixels wide: ml.preprocess widens thin canvas strokes to ~3.3.
PEN_SCALE = 2
PEN_RADII = (2, 3, 4)


def redraw_as_pen(batch: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A `fraction` of the images (N, 1, 28, 28), chosen at random, redrawn as an even-width
    line along their centre line; without such images a model reads canvas letters markedly
    worse than scanned ones."""
    chosen = torch.rand(batch.shape[0], generator=generator) < fraction
    if not chosen.any():
        return batch
    enlarged = F.interpolate(batch[chosen], scale_factor=PEN_SCALE, mode="bilinear")
    centre = torch.from_numpy(skeleton(enlarged.numpy() >= 128)).float()
    radius = torch.tensor(PEN_RADII)[
        torch.randint(len(PEN_RADII), (len(centre),), generator=generator)
    ]
    drawn = torch.empty_like(centre)
    for r in PEN_RADII:
        grid = torch.arange(-r, r + 1, dtype=torch.float32)
        disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= r * r + r).float()[None, None]
        group = radius == r
        drawn[group] = (F.conv2d(centre[group], disk, padding=r) > 0).float()
    redrawn = batch.clone()
    redrawn[chosen] = 255 * F.avg_pool2d(drawn, PEN_SCALE)
    return redrawn


def pen_lines_of(images: np.ndarray, seed: int) -> tuple[np.ndarray, list[Letter | None]]:
    """Uint8 images (N, 28, 28) redrawn as pen lines, in EMNIST's frame (float, 0-255), and each
    framed by preprocessing as a canvas letter is served (None where it finds no letter)."""
    generator = torch.Generator().manual_seed(seed)
    redrawn = redraw_as_pen(torch.from_numpy(images).float().unsqueeze(1), 1.0, generator)
    pixels = redrawn[:, 0].numpy()
    return pixels, [_framed(letter) for letter in pixels.astype(np.uint8)]


def _framed(pixels: np.ndarray) -> Letter | None:
    try:
        return array_to_letter(pixels)
    except PreprocessError:
        return None
