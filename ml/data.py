"""Read EMNIST gzip IDX files by directory and split name.

The same reader serves the offline pools (`pool47`, `pool62`) and an official EMNIST download
(`balanced`, `byclass`, `bymerge`, `letters`, `digits`, `mnist`): the file names follow NIST's
scheme `emnist-{split}-{train|test}-{images-idx3|labels-idx1}-ubyte.gz`.

EMNIST stores every image transposed. `load_split` returns them upright; this is the only place
in the project that knows about that orientation.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emnist"
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
IMAGE_SIDE = 28

Part = Literal["train", "test"]


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class EmnistSplit:
    """One part of a split: upright uint8 images (N, 28, 28), int64 labels, label characters."""

    images: np.ndarray
    labels: np.ndarray
    characters: list[str]
    files: list[Path]

    @property
    def num_classes(self) -> int:
        return len(self.characters)


def split_files(data_dir: Path, split: str, part: Part) -> tuple[Path, Path, Path]:
    """The images, labels and mapping file of one part of a split, by NIST's naming scheme."""
    stem = data_dir / f"emnist-{split}-{part}"
    return (
        Path(f"{stem}-images-idx3-ubyte.gz"),
        Path(f"{stem}-labels-idx1-ubyte.gz"),
        data_dir / f"emnist-{split}-mapping.txt",
    )


def read_mapping(path: Path) -> tuple[list[str], int]:
    """Label characters in class order, and the first class number (1 for EMNIST Letters).

    Lines are `class ascii-code [more codes]` (Letters lists upper and lower case; the first
    code names the class), CRLF or LF.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: mapping file not found")
    pairs: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 2 or not all(f.isdigit() for f in fields):
            raise DatasetError(f"{path}:{number}: expected 'class ascii-code', got {line!r}")
        pairs[int(fields[0])] = chr(int(fields[1]))
    first = min(pairs, default=0)
    if not pairs or sorted(pairs) != list(range(first, first + len(pairs))) or first > 1:
        raise DatasetError(f"{path}: classes must be numbered from 0 (or 1) without gaps")
    return [pairs[i] for i in range(first, first + len(pairs))], first


def _read_idx(path: Path, magic: int, dims: int) -> tuple[tuple[int, ...], np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable gzip file ({error})") from error
    header_size = 4 + 4 * dims
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes)")
    (found_magic,) = struct.unpack(">I", raw[:4])
    if found_magic != magic:
        raise DatasetError(f"{path}: bad magic number 0x{found_magic:08x}, expected 0x{magic:08x}")
    shape = struct.unpack(f">{dims}I", raw[4:header_size])
    expected = int(np.prod(shape))
    body = np.frombuffer(raw, dtype=np.uint8, offset=header_size)
    if body.size != expected:
        raise DatasetError(
            f"{path}: truncated or oversized: header says {shape} ({expected} bytes), "
            f"found {body.size} bytes of data"
        )
    return shape, body


def load_split(data_dir: Path | str, split: str, part: Part) -> EmnistSplit:
    """Load and validate one part of a split; images come back upright."""
    data_dir = Path(data_dir)
    images_path, labels_path, mapping_path = split_files(data_dir, split, part)
    characters, first_class = read_mapping(mapping_path)
    shape, pixels = _read_idx(images_path, IMAGES_MAGIC, 3)
    if shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DatasetError(f"{images_path}: images are {shape[1]}x{shape[2]}, expected 28x28")
    (count,), labels = _read_idx(labels_path, LABELS_MAGIC, 1)
    if count != shape[0]:
        raise DatasetError(f"{labels_path}: {count} labels for {shape[0]} images in {images_path}")
    labels = labels.astype(np.int64) - first_class
    if labels.size and (labels.min() < 0 or labels.max() >= len(characters)):
        bad = int(labels.max() if labels.max() >= len(characters) else labels.min()) + first_class
        raise DatasetError(
            f"{labels_path}: label {bad} out of range for the "
            f"{len(characters)} classes in {mapping_path}"
        )
    upright = pixels.reshape(shape).transpose(0, 2, 1).copy()
    return EmnistSplit(upright, labels, characters, [images_path, labels_path, mapping_path])


def sha256_of(path: Path) -> str:
    """Hex digest of a file, recorded in model.json so a model names the exact data it saw."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def held_out_seed(config: dict) -> int:
    """The seed that chose a training run's validation part (runs before `val_seed` used `seed`)."""
    return config.get("val_seed", config["seed"])


def held_out_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and validation parts, stratified so every class is in both."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        cut = max(1, round(len(members) * fraction)) if len(members) > 1 else 0
        val_idx.append(members[:cut])
        train_idx.append(members[cut:])
    return np.concatenate(train_idx), np.concatenate(val_idx)
