"""Training images borrowed from another split whose label set may merge our classes.

pool47 holds ~90,000 train-side images that pool62 lacks, but labels them with EMNIST
Balanced's merged classes ("C" stands for C or c). Such a label still narrows the answer to a
few of our classes, so it trains as a partial label: the loss rewards probability on any of them.
Images that are also in our own split are dropped: duplicates add nothing, and a test image
would leak into training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ml.data import EmnistSplit


@dataclass(frozen=True)
class BorrowedImages:
    """Borrowed upright images, and per image a mask (N, our classes) of the classes it may be."""

    images: np.ndarray
    candidates: np.ndarray
    dropped_in_our_split: int
    dropped_unmappable: int


def candidate_classes(their_characters: list[str], our_characters: list[str]) -> np.ndarray:
    """Mask (their classes, our classes): which of ours each of their labels can mean.

    A letter stands for both cases when their label set has no class for the other case.
    """
    ours = {character: index for index, character in enumerate(our_characters)}
    theirs = set(their_characters)
    mask = np.zeros((len(their_characters), len(our_characters)), dtype=bool)
    for row, character in enumerate(their_characters):
        meanings = {character}
        if character.isalpha() and character.swapcase() not in theirs:
            meanings.add(character.swapcase())
        for meaning in meanings & ours.keys():
            mask[row, ours[meaning]] = True
    return mask


def pixel_keys(images: np.ndarray) -> list[bytes]:
    """A digest of each image's pixels, to find the same image in two splits."""
    return [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]


def borrow(
    extra: EmnistSplit, our_characters: list[str], ours: list[EmnistSplit]
) -> BorrowedImages:
    """The images of `extra` that none of `ours` holds, with their candidate masks."""
    seen = {key for split in ours for key in pixel_keys(split.images)}
    new = np.array([key not in seen for key in pixel_keys(extra.images)], dtype=bool)
    candidates = candidate_classes(extra.characters, our_characters)[extra.labels]
    mappable = candidates.any(axis=1)
    keep = new & mappable
    return BorrowedImages(
        images=extra.images[keep],
        candidates=candidates[keep],
        dropped_in_our_split=int((~new).sum()),
        dropped_unmappable=int((new & ~mappable).sum()),
    )
