"""ml.file_structure: files built to make a decoder spend seconds or gigabytes are refused before
it runs, with a reason; honest files of the same kinds still read as their pixels say."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.crafted_images import (
    SHORT,
    UNKNOWN_TAGS,
    encode,
    exif_sharing_one_blob,
    gif_with_comment,
    gray_tiff,
    jpeg_with_segments,
    png_with_chunks,
    repeating_a_scan,
    run_length_bmp,
    run_length_jump_past_the_end,
    sharing_one_blob,
)
from ml.file_structure import FileLimits
from ml.image_errors import (
    ImageTooComplexError,
    PreprocessError,
    TooManyFramesError,
    TruncatedImageError,
)
from ml.preprocess import to_model_input
from tests.test_preprocess import SPEC, animation, letter

LETTER = letter(64)
PIXELS = np.asarray(LETTER)
EXPECTED = to_model_input(encode(LETTER, "PNG"), SPEC)
# More entries than the default limit (10,000) allows.
TOO_MANY = 12_000


def read(data: bytes, limits: FileLimits = FileLimits()) -> np.ndarray:
    return to_model_input(data, SPEC, limits)


def progressive_jpeg() -> bytes:
    return encode(LETTER, "JPEG", progressive=True, quality=95)


@pytest.mark.parametrize("carrier", ["PNG", "WEBP", "JPEG", "TIFF"])
def test_exif_tags_sharing_one_blob_are_refused(carrier: str) -> None:
    # 300 tags x 50 kB: 15 MB for Pillow to copy out of a 54 kB block (fits a JPEG segment).
    exif = b"Exif\x00\x00" + exif_sharing_one_blob(tags=300, blob=50_000)
    if carrier == "TIFF":
        data = gray_tiff(PIXELS, extra=sharing_one_blob(300, 50_000, at=8), blob=bytes(50_000))
    else:
        data = encode(LETTER.convert("RGB"), carrier, exif=exif)
    with pytest.raises(ImageTooComplexError, match="same bytes many times"):
        read(data)


def test_an_honest_exif_block_still_turns_the_image() -> None:
    turned = encode(LETTER.rotate(90, expand=True), "PNG", exif=exif_with_orientation(6))
    np.testing.assert_array_equal(read(turned), EXPECTED)


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[274] = orientation
    return exif.tobytes()


def test_a_progressive_jpeg_repeating_a_scan_is_refused() -> None:
    data = repeating_a_scan(progressive_jpeg(), times=500)
    with pytest.raises(ImageTooComplexError, match="more than 100 progressive scans"):
        read(data)


def test_the_scan_limit_is_a_parameter() -> None:
    data = progressive_jpeg()
    scans = data.count(b"\xff\xda")
    assert read(data, FileLimits(max_jpeg_scans=scans)).shape == (28, 28)
    with pytest.raises(ImageTooComplexError, match=f"more than {scans - 1} progressive"):
        read(data, FileLimits(max_jpeg_scans=scans - 1))


@pytest.mark.parametrize(
    "build",
    [
        lambda: gray_tiff(PIXELS, extra=[(UNKNOWN_TAGS + t, SHORT, 1, 0) for t in range(TOO_MANY)]),
        lambda: gray_tiff(np.zeros((TOO_MANY, 2), np.uint8), rows_per_strip=1),
        lambda: gif_with_comment(encode(LETTER, "GIF"), [b"a"] * TOO_MANY),
        lambda: png_with_chunks(encode(LETTER, "PNG"), TOO_MANY),
        lambda: jpeg_with_segments(encode(LETTER, "JPEG"), TOO_MANY),
    ],
    ids=["tiff-tags", "tiff-strips", "gif-comment-pieces", "png-chunks", "jpeg-segments"],
)
def test_files_made_of_too_many_pieces_are_refused(build: object) -> None:
    with pytest.raises(ImageTooComplexError, match="more than 10,000 metadata entries"):
        read(build())


def test_the_entry_limit_is_a_parameter() -> None:
    data = png_with_chunks(encode(LETTER, "PNG"), 50)
    np.testing.assert_array_equal(read(data, FileLimits(max_metadata_entries=60)), EXPECTED)
    with pytest.raises(ImageTooComplexError, match="more than 40 metadata"):
        read(data, FileLimits(max_metadata_entries=40))


def test_a_hand_built_tiff_in_strips_reads_as_its_pixels() -> None:
    np.testing.assert_array_equal(read(gray_tiff(PIXELS, rows_per_strip=4)), EXPECTED)


def test_a_gif_with_a_long_comment_reads_as_its_first_image() -> None:
    # 4,000 full sub-blocks: 1 MB of comment, which Pillow would gather by repeated concatenation.
    data = gif_with_comment(encode(LETTER, "GIF"), [b"c" * 255] * 4_000)
    np.testing.assert_array_equal(read(data), EXPECTED)


@pytest.mark.parametrize("file_format", ["GIF", "TIFF"])
def test_only_the_first_frame_is_read(file_format: str) -> None:
    np.testing.assert_array_equal(read(animation(file_format, 3, side=64)), EXPECTED)
    with pytest.raises(TooManyFramesError, match="more than 100"):
        read(animation(file_format, 150))


def test_a_run_length_bmp_reads_as_its_pixels() -> None:
    np.testing.assert_array_equal(read(run_length_bmp(PIXELS)), EXPECTED)


def test_a_run_length_bmp_cut_short_is_called_damaged() -> None:
    whole = run_length_bmp(PIXELS)
    with pytest.raises(TruncatedImageError, match="truncated or damaged"):
        read(whole[: len(whole) * 2 // 3])


@pytest.mark.parametrize(
    "width, error",
    [(400_000, "No ink found"), (4_000_000, "not decoded")],
    ids=["wide", "wider-than-opencv-reads"],
)
def test_a_run_length_bmp_jumping_past_its_end_costs_only_its_pixels(
    width: int, error: str
) -> None:
    # Pillow's decoder appended every jump to its buffer: a 1 kB file of 4,000,000 x 6 px asked
    # for 2 GB; OpenCV stops at the image's end.
    with pytest.raises(PreprocessError, match=error):
        read(run_length_jump_past_the_end(width, 6))
