"""Fixtures every test package shares: synthetic EMNIST files and the real data folder."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from ml.data import DEFAULT_DATA_DIR, IMAGES_MAGIC, LABELS_MAGIC

IN_CI = os.environ.get("CI") == "true"

# The HTTP stack (base_url) lives in one plugin so that browser and CLI tests share one instance.
pytest_plugins = ["tests.stack"]


def require(condition: bool, reason: str) -> None:
    """Skip when a real part is missing on a developer machine; fail in CI, which must have it."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must have this: {reason}")
    pytest.skip(reason)


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    """An IDX file as NIST writes them: big-endian magic, dimensions, then uint8 data."""
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def write_split(
    directory: Path, split: str, images: np.ndarray, labels: np.ndarray, characters: str
) -> None:
    """Train and test parts (the same data) plus a CRLF mapping, named as EMNIST names them.

    `images` are upright; they are stored transposed, as in the real files.
    """
    for part in ("train", "test"):
        stored = images.transpose(0, 2, 1)
        write_idx(directory / f"emnist-{split}-{part}-images-idx3-ubyte.gz", IMAGES_MAGIC, stored)
        write_idx(directory / f"emnist-{split}-{part}-labels-idx1-ubyte.gz", LABELS_MAGIC, labels)
    mapping = "".join(f"{i} {ord(c)}\r\n" for i, c in enumerate(characters))
    (directory / f"emnist-{split}-mapping.txt").write_text(mapping, newline="")


def synthetic_glyphs(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three easily told apart classes (vertical bar, horizontal bar, box) with jitter."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        dx, dy = rng.integers(-3, 4, 2)
        if label == 0:
            image[6 + dy : 22 + dy, 12 + dx : 16 + dx] = 255
        elif label == 1:
            image[12 + dy : 16 + dy, 6 + dx : 22 + dx] = 255
        else:
            image[7 + dy : 21 + dy, 7 + dx : 21 + dx] = 255
            image[10 + dy : 18 + dy, 10 + dx : 18 + dx] = 0
    return images, labels


@pytest.fixture
def synthetic_data_dir(tmp_path: Path) -> Path:
    """A data folder holding a small synthetic split named `tiny` with classes I, -, O."""
    images, labels = synthetic_glyphs(300)
    write_split(tmp_path, "tiny", images, labels, "I-O")
    return tmp_path


@pytest.fixture(scope="session")
def emnist_dir() -> Path:
    """The real EMNIST pools beside the checkout."""
    require(
        (DEFAULT_DATA_DIR / "emnist-pool47-test-images-idx3-ubyte.gz").is_file(),
        f"EMNIST data folder {DEFAULT_DATA_DIR} is absent",
    )
    return DEFAULT_DATA_DIR
