"""Image files built to make a decoder spend seconds or gigabytes, and honest files of the same
rare kinds (run-length BMPs, hand-built TIFFs) to show those still read.

Shared by `bench.decoder_bombs`, the unit tests of `ml.file_structure` and the service's
hostile-file tests.
"""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
from PIL import Image

# TIFF field types used here.
SHORT, LONG, UNDEFINED = 3, 4, 7
ORIENTATION = 274
# The first tag number past every tag Pillow knows how to interpret.
UNKNOWN_TAGS = 50_000
JPEG_SCAN = re.compile(rb"\xff\xda")


def encode(image: Image.Image, file_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def directory(entries: list[tuple[int, int, int, int]], next_offset: int = 0) -> bytes:
    """One little-endian TIFF directory: (tag, type, count, value or offset) per entry."""
    body = struct.pack("<H", len(entries))
    for entry in sorted(entries):
        body += struct.pack("<HHII", *entry)
    return body + struct.pack("<I", next_offset)


def sharing_one_blob(tags: int, blob: int, at: int) -> list[tuple[int, int, int, int]]:
    """`tags` directory entries whose values are all the same `blob` bytes at offset `at`."""
    return [(UNKNOWN_TAGS + tag, UNDEFINED, blob, at) for tag in range(tags)]


def exif_sharing_one_blob(tags: int, blob: int) -> bytes:
    """An EXIF block (upright) whose `tags` tags all point at the same `blob` bytes."""
    blob_at = 8 + 2 + 12 * (tags + 1) + 4
    entries = [(ORIENTATION, SHORT, 1, 1), *sharing_one_blob(tags, blob, blob_at)]
    return b"II*\x00" + struct.pack("<I", 8) + directory(entries) + bytes(blob)


def gray_tiff(
    pixels: np.ndarray,
    rows_per_strip: int | None = None,
    extra: list[tuple[int, int, int, int]] | None = None,
    blob: bytes = b"",
) -> bytes:
    """An uncompressed grey TIFF, by hand: `blob` lies after the header (offset 8), for `extra`
    tags to point at; strips of `rows_per_strip` rows (default: one strip)."""
    height, width = pixels.shape
    rows = rows_per_strip or height
    starts = range(0, height, rows)
    pixels_at = 8 + len(blob)
    offsets_at = pixels_at + pixels.size
    offsets = np.array([pixels_at + start * width for start in starts], "<u4")
    counts = np.array([min(rows, height - start) * width for start in starts], "<u4")
    counts_at = offsets_at + offsets.nbytes
    directory_at = counts_at + counts.nbytes
    strips = len(offsets)
    entries = [
        (256, LONG, 1, width),
        (257, LONG, 1, height),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 1),
        (273, LONG, strips, offsets_at if strips > 1 else int(offsets[0])),
        (277, SHORT, 1, 1),
        (278, LONG, 1, rows),
        (279, LONG, strips, counts_at if strips > 1 else int(counts[0])),
        *(extra or []),
    ]
    return (
        b"II*\x00"
        + struct.pack("<I", directory_at)
        + blob
        + pixels.astype(np.uint8).tobytes()
        + offsets.tobytes()
        + counts.tobytes()
        + directory(entries)
    )


def repeating_a_scan(progressive_jpeg: bytes, times: int) -> bytes:
    """A progressive JPEG whose last scan is repeated: each copy costs a pass over every block
    of the image, and a scan that changes nothing takes a few bytes."""
    last = JPEG_SCAN.finditer(progressive_jpeg)
    start = max(found.start() for found in last)
    end = progressive_jpeg.rindex(b"\xff\xd9")
    scan = progressive_jpeg[start:end]
    return progressive_jpeg[:end] + scan * times + progressive_jpeg[end:]


def jpeg_with_segments(jpeg: bytes, segments: int) -> bytes:
    """The JPEG with `segments` one-byte comment segments after its start marker."""
    return jpeg[:2] + b"\xff\xfe\x00\x03a" * segments + jpeg[2:]


def gif_with_comment(gif: bytes, sub_blocks: list[bytes]) -> bytes:
    """The GIF with a comment made of `sub_blocks`, before its first image."""
    start = 13 + ((3 << ((gif[10] & 7) + 1)) if gif[10] & 0x80 else 0)
    comment = b"!\xfe" + b"".join(bytes([len(block)]) + block for block in sub_blocks) + b"\x00"
    return gif[:start] + comment + gif[start:]


def png_with_chunks(png: bytes, chunks: int) -> bytes:
    """The PNG with `chunks` empty private chunks before its end."""
    private = struct.pack(">I4sI", 0, b"prVt", zlib.crc32(b"prVt"))
    end = png.rindex(b"IEND") - 4
    return png[:end] + private * chunks + png[end:]


def run_length_bmp(pixels: np.ndarray) -> bytes:
    """An 8-bit grey BMP compressed with runs (BI_RLE8), its rows bottom-up as BMPs store them."""
    data = bytearray()
    for row in pixels[::-1]:
        start = 0
        while start < len(row):
            run = 1
            while start + run < len(row) and run < 255 and row[start + run] == row[start]:
                run += 1
            data += bytes((run, int(row[start])))
            start += run
        data += b"\x00\x00"
    return _bmp_rle8(pixels.shape[1], pixels.shape[0], bytes(data) + b"\x00\x01")


def run_length_jump_past_the_end(width: int, height: int) -> bytes:
    """A run-length BMP of a few hundred bytes whose only runs are two jumps 255 rows up."""
    return _bmp_rle8(width, height, b"\x00\x02\xff\xff" * 2 + b"\x00\x01")


def _bmp_rle8(width: int, height: int, data: bytes) -> bytes:
    palette = b"".join(bytes((level, level, level, 0)) for level in range(256))
    start = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    header = b"BM" + struct.pack("<IHHI", start + len(data), 0, 0, start)
    return header + info + palette + data
