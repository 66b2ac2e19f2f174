"""The IDX loader reads valid files upright and names the file and the fault in every error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from ml.data import IMAGES_MAGIC, DatasetError, load_split
from tests.conftest import synthetic_glyphs, write_idx, write_split


def test_loads_upright_images_labels_and_characters(synthetic_data_dir: Path) -> None:
    split = load_split(synthetic_data_dir, "tiny", "train")
    expected_images, expected_labels = synthetic_glyphs(300)
    assert split.images.shape == (300, 28, 28)
    np.testing.assert_array_equal(split.images, expected_images)
    np.testing.assert_array_equal(split.labels, expected_labels)
    assert split.characters == ["I", "-", "O"]


def test_bad_magic_names_file(synthetic_data_dir: Path) -> None:
    path = synthetic_data_dir / "emnist-tiny-train-images-idx3-ubyte.gz"
    write_idx(path, 0x0801, np.zeros((3, 28, 28)))
    with pytest.raises(DatasetError, match=r"images-idx3-ubyte\.gz: bad magic number 0x00000801"):
        load_split(synthetic_data_dir, "tiny", "train")


def test_truncated_file(synthetic_data_dir: Path) -> None:
    path = synthetic_data_dir / "emnist-tiny-train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetError, match=r"images-idx3-ubyte\.gz: truncated"):
        load_split(synthetic_data_dir, "tiny", "train")


def test_label_out_of_range(tmp_path: Path) -> None:
    images, labels = synthetic_glyphs(10)
    labels[4] = 7
    write_split(tmp_path, "tiny", images, labels, "I-O")
    with pytest.raises(DatasetError, match=r"label 7 out of range for the 3 classes"):
        load_split(tmp_path, "tiny", "test")


def test_missing_mapping(synthetic_data_dir: Path) -> None:
    (synthetic_data_dir / "emnist-tiny-mapping.txt").unlink()
    with pytest.raises(DatasetError, match=r"emnist-tiny-mapping\.txt: mapping file not found"):
        load_split(synthetic_data_dir, "tiny", "train")


def test_count_mismatch_between_images_and_labels(synthetic_data_dir: Path) -> None:
    write_idx(
        synthetic_data_dir / "emnist-tiny-test-images-idx3-ubyte.gz",
        IMAGES_MAGIC,
        np.zeros((5, 28, 28)),
    )
    with pytest.raises(DatasetError, match=r"300 labels for 5 images"):
        load_split(synthetic_data_dir, "tiny", "test")


def test_letters_mapping_numbered_from_one(tmp_path: Path) -> None:
    """EMNIST Letters numbers classes 1..26 and lists upper and lower case codes."""
    images, labels = synthetic_glyphs(12)
    write_split(tmp_path, "letters", images, labels + 1, "abc")
    (tmp_path / "emnist-letters-mapping.txt").write_text("1 65 97\n2 66 98\n3 67 99\n")
    split = load_split(tmp_path, "letters", "train")
    assert split.characters == ["A", "B", "C"]
    np.testing.assert_array_equal(split.labels, labels)


def test_real_pool_is_upright(emnist_dir: Path) -> None:
    """An upright '1' or 'I' is taller than wide: the ink's rows span more than its columns."""
    split = load_split(emnist_dir, "pool47", "test")
    ones = split.images[split.labels == split.characters.index("1")][:200] > 128
    row_span = ones.any(axis=2).sum(axis=1).mean()
    column_span = ones.any(axis=1).sum(axis=1).mean()
    assert row_span > 2 * column_span
