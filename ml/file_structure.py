"""What an image file's own structure declares, read before a decoder is trusted with it.

Pillow's parsers take a file at its word, so a few crafted bytes can make them spend seconds or
gigabytes: a progressive JPEG repeating one scan thousands of times, TIFF or EXIF tags that all
point at one large blob, a GIF comment in a million pieces, a million TIFF strips. The walks
here step over a file's containers (PNG chunks, JPEG segments, GIF blocks, WebP chunks, TIFF
directories) without decoding anything, refuse what no real picture holds, and hand the decoder
only the first frame where the format allows.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import TiffImagePlugin

from ml.image_errors import ImageTooComplexError, TooManyFramesError


@dataclass(frozen=True)
class FileLimits:
    """What one image file may declare before it is refused unread (the service's settings)."""

    max_pixels: int = 25_000_000
    max_frames: int = 100
    max_jpeg_scans: int = 100
    max_metadata_entries: int = 10_000


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
JPEG_SIGNATURE = b"\xff\xd8"
# A WebP file is a RIFF container that names its format at byte 8.
WEBP_SIGNATURE = b"WEBP"
# Every TIFF header Pillow accepts (EXIF and multi-picture blocks are TIFF files too).
TIFF_HEADERS = frozenset(TiffImagePlugin.PREFIXES)

# Plain PNGs are decoded by libspng (pyspng), three times faster than Pillow on canvas exports:
# those of these (colour type, bit depth) -> mode, and none of these chunks: animation (acTL),
# a transparent colour (tRNS, which libspng would not apply), and those that may carry an
# orientation Pillow applies (EXIF, or XMP and raw EXIF profiles in text chunks).
PLAIN_PNG_MODES = {
    (0, 2): "L",
    (0, 4): "L",
    (0, 8): "L",
    (2, 8): "RGB",
    (2, 16): "RGB",
    (6, 8): "RGBA",
    (6, 16): "RGBA",
}
NOT_PLAIN_PNG_CHUNKS = frozenset((b"acTL", b"tRNS", b"eXIf", b"tEXt", b"zTXt", b"iTXt"))

# After a JPEG scan header, its entropy-coded data runs to the next marker: 0xFF followed by
# anything but a stuffed zero, a restart marker or another 0xFF (fill).
JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
JPEG_SOS, JPEG_EOI, JPEG_APP1, JPEG_APP2 = 0xDA, 0xD9, 0xE1, 0xE2
JPEG_STANDALONE_MARKERS = frozenset((0x01, *range(0xD0, 0xD9)))
# Pillow joins a JPEG's EXIF segments by repeated concatenation: more than this are refused.
JPEG_MAX_EXIF_SEGMENTS = 16

# Bytes per value of each TIFF field type (0: a type Pillow skips).
TIFF_TYPE_SIZES = np.array([0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8, 8, 8], np.uint64)
# Types Pillow keeps as bytes (BYTE, ASCII, SBYTE, UNDEFINED); values of every other type become
# one Python object each, and count against the entry limit.
TIFF_BYTE_TYPES = (1, 2, 6, 7)
# StripByteCounts and TileByteCounts pair with the offsets, which are counted.
TIFF_PAIRED_TAGS = (279, 325)
# Exif, GPS and Interoperability directories: Pillow loads them with the first one.
TIFF_SUB_DIRECTORY_TAGS = (34665, 34853, 40965)
# GIF sub-blocks and PNG image-data chunks shorter than this count against the entry limit:
# encoders fill them, so only a run's last one (or an XMP packet's) is short, and walks stay cheap.
SHORT_PIECE = 64


def for_decoder(data: bytes, limits: FileLimits) -> bytes:
    """`data` once its structure passed `limits`; for a GIF or TIFF, only its first frame."""
    if data.startswith(GIF_SIGNATURES):
        return _first_gif_frame(data, limits)
    if data[:4] in TIFF_HEADERS:
        return _first_tiff_directory(data, limits)
    if data.startswith(JPEG_SIGNATURE):
        _check_jpeg(data, limits)
    elif data.startswith(PNG_SIGNATURE):
        _check_png(data, limits)
    return data


def check_exif(exif: bytes, limits: FileLimits) -> None:
    """Refuse an EXIF block whose first directory (what Pillow reads) would cost too much."""
    _walk_tiff(exif.removeprefix(b"Exif\x00\x00"), limits, max_directories=1)


def plain_png(data: bytes, limits: FileLimits) -> tuple[int, int, str] | None:
    """Width, height and mode of a PNG that libspng decodes to the pixels Pillow would; None for
    any other file.

    A chunk whose checksum is wrong makes the file Pillow's to judge: libspng, as pyspng calls
    it, would decode a damaged header.
    """
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height, bit_depth, colour_type = struct.unpack_from(">IIBB", data, 16)
    mode = PLAIN_PNG_MODES.get((colour_type, bit_depth))
    if mode is None:
        return None
    for kind, _, intact in _png_chunks(data, limits):
        if kind in NOT_PLAIN_PNG_CHUNKS or not intact:
            return None
    return width, height, mode


def _png_chunks(data: bytes, limits: FileLimits) -> Iterator[tuple[bytes, memoryview, bool]]:
    """Each chunk's type, contents and whether its checksum holds, up to IEND."""
    chunks, position = memoryview(data), len(PNG_SIGNATURE)
    entries = _entries(limits)
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind != b"IDAT" or length < SHORT_PIECE:
            next(entries)
        end = position + 8 + length
        checksum = zlib.crc32(chunks[position + 4 : end]).to_bytes(4, "big")
        yield kind, chunks[position + 8 : end], data[end : end + 4] == checksum
        if kind == b"IEND":
            return
        position = end + 4


def _check_png(data: bytes, limits: FileLimits) -> None:
    """Count the chunks: Pillow reads each one in Python."""
    for _ in _png_chunks(data, limits):
        pass


def _check_jpeg(data: bytes, limits: FileLimits) -> None:
    """Count segments and scans, and check the EXIF and multi-picture blocks Pillow reads."""
    position, scans, exif, pictures = len(JPEG_SIGNATURE), 0, [], b""
    for _ in _entries(limits):
        if position + 4 > len(data):
            break
        if data[position] != 0xFF:
            # libjpeg and Pillow skip stray bytes to the next marker.
            position = data.find(b"\xff", position)
            if position < 0:
                break
            continue
        marker = data[position + 1]
        if marker in JPEG_STANDALONE_MARKERS or marker == 0xFF:
            position += 1 if marker == 0xFF else 2
            continue
        if marker == JPEG_EOI:
            break
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == JPEG_APP1 and data.startswith(b"Exif\x00\x00", position + 4):
            exif.append(data[position + 10 : end])
        if marker == JPEG_APP2 and data.startswith(b"MPF\x00", position + 4):
            pictures = data[position + 8 : end]
        position = end
        if marker == JPEG_SOS:
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise ImageTooComplexError(
                    f"The JPEG has more than {limits.max_jpeg_scans} progressive scans; "
                    "such files are not decoded."
                )
            found = JPEG_MARKER.search(data, position)
            if found is None:
                break
            position = found.start()
    if len(exif) > JPEG_MAX_EXIF_SEGMENTS:
        raise ImageTooComplexError(
            f"The JPEG's EXIF block comes in more than {JPEG_MAX_EXIF_SEGMENTS} pieces; "
            "such files are not decoded."
        )
    # Pillow keeps every EXIF segment, joined, and the last multi-picture index.
    for block in (b"".join(exif), pictures):
        _walk_tiff(block, limits, max_directories=1)


def _first_gif_frame(data: bytes, limits: FileLimits) -> bytes:
    """Count a GIF's frames and return its header, first image and the control block before
    that image: Pillow then reads no comment, extension or later frame."""
    position = 13
    if len(data) > 10 and data[10] & 0x80:
        position += 3 << ((data[10] & 7) + 1)
    header, control, first, frames = data[:position], b"", b"", 0
    entries = _entries(limits)
    while position < len(data) and frames <= limits.max_frames:
        next(entries)
        start, block = position, data[position]
        if block == 0x2C:
            frames += 1
            flags = data[position + 9] if position + 9 < len(data) else 0
            position += 11 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
        elif block == 0x21:
            position += 2
        elif block == 0x3B:
            break
        else:
            # Pillow skips bytes it does not know, one at a time.
            position += 1
            continue
        while position < len(data) and data[position]:
            if data[position] < SHORT_PIECE:
                next(entries)
            position += data[position] + 1
        position += 1
        if block == 0x21 and data[start + 1 : start + 2] == b"\xf9" and not first:
            control = data[start:position]
        if block == 0x2C and not first:
            first = data[start:position]
    check_frames(frames, limits)
    # Without an image, Pillow is handed none, and finds the file damaged.
    return header + control + first + b";"


def _first_tiff_directory(data: bytes, limits: FileLimits) -> bytes:
    """Check a TIFF's chain of directories (one per page) and cut it after the first."""
    pages, next_pointer = _walk_tiff(data, limits, max_directories=limits.max_frames + 1)
    check_frames(pages, limits)
    if pages < 2 or next_pointer is None:
        return data
    size = 8 if _TiffReader.layout(data)[1] else 4
    return data[:next_pointer] + bytes(size) + data[next_pointer + size :]


def _walk_tiff(tiff: bytes, limits: FileLimits, max_directories: int) -> tuple[int, int | None]:
    """Check a TIFF-structured block, walking up to `max_directories` directories: how many
    there are and where the first one's pointer to the next lies (None: no directory).

    Entries per directory are limited (with every value Pillow unpacks one by one), and the
    values of the first directory and its Exif, GPS and Interoperability directories, all of
    which Pillow reads, must not overlap: tags sharing one large blob turn kilobytes into gigabytes.
    """
    layout = _TiffReader.layout(tiff)
    if layout is None or len(tiff) < 16:
        return 0, None
    reader = _TiffReader(tiff, *layout, limits)
    offset = reader.pointer(8 if reader.big else 4)
    pages, first_next, seen = 0, None, set()
    while offset and offset not in seen and pages < max_directories:
        seen.add(offset)
        found = reader.directory(offset)
        if found is None:
            break
        entries, next_at = found
        if pages == 0:
            first_next = next_at
            reader.check_values(entries)
        pages += 1
        offset = reader.pointer(next_at)
    return pages, first_next


@dataclass
class _TiffReader:
    """Directories of one TIFF-structured block, read as Pillow reads them."""

    tiff: bytes
    order: str
    big: bool
    limits: FileLimits

    @staticmethod
    def layout(tiff: bytes) -> tuple[str, bool] | None:
        """Byte order and BigTIFF-ness by Pillow's rules (43 at byte 2 means BigTIFF)."""
        if tiff[:4] not in TIFF_HEADERS:
            return None
        return ("<" if tiff[:2] == b"II" else ">"), tiff[2] == 0x2B

    @cached_property
    def entry(self) -> np.dtype:
        word = self.order + ("u8" if self.big else "u4")
        fields = [("tag", self.order + "u2"), ("type", self.order + "u2")]
        return np.dtype([*fields, ("count", word), ("value", word)])

    def pointer(self, at: int) -> int:
        return struct.unpack_from(self.order + ("Q" if self.big else "I"), self.tiff, at)[0]

    def directory(self, offset: int) -> tuple[np.ndarray, int] | None:
        """The entries of the directory at `offset` and where its next-directory pointer lies;
        None where it does not fit in the block."""
        count_format = self.order + ("Q" if self.big else "H")
        entries_at = offset + struct.calcsize(count_format)
        if entries_at > len(self.tiff):
            return None
        count = struct.unpack_from(count_format, self.tiff, offset)[0]
        if count > self.limits.max_metadata_entries:
            raise _too_many_entries(self.limits)
        next_at = entries_at + count * self.entry.itemsize
        if next_at + (8 if self.big else 4) > len(self.tiff):
            return None
        entries = np.frombuffer(self.tiff, self.entry, count=count, offset=entries_at)
        unpacked = ~np.isin(entries["type"], TIFF_BYTE_TYPES) & ~np.isin(
            entries["tag"], TIFF_PAIRED_TAGS
        )
        if count + int(self.counts(entries)[unpacked].sum()) > self.limits.max_metadata_entries:
            raise _too_many_entries(self.limits)
        return entries, next_at

    def counts(self, entries: np.ndarray) -> np.ndarray:
        return np.minimum(entries["count"], len(self.tiff)).astype(np.uint64)

    def check_values(self, first: np.ndarray) -> None:
        """Refuse a first directory whose values, with its sub-directories', overlap."""
        directories = [first]
        for pointer in first["value"][np.isin(first["tag"], TIFF_SUB_DIRECTORY_TAGS)]:
            found = self.directory(int(pointer)) if 0 < pointer < len(self.tiff) else None
            directories += [found[0]] if found is not None else []
        if sum(self.value_bytes(entries) for entries in directories) > len(self.tiff):
            raise ImageTooComplexError(
                "The file's metadata points at the same bytes many times over; "
                "such files are not decoded."
            )

    def value_bytes(self, entries: np.ndarray) -> int:
        """Bytes of the values stored outside the directory, within the block."""
        types = entries["type"]
        sizes = (
            self.counts(entries) * TIFF_TYPE_SIZES[np.where(types < len(TIFF_TYPE_SIZES), types, 0)]
        )
        size = len(self.tiff)
        in_block = (sizes > (8 if self.big else 4)) & (
            entries["value"] <= size - np.minimum(sizes, size)
        )
        return int(sizes[in_block].sum())


def _entries(limits: FileLimits) -> Iterator[None]:
    """One step per chunk, segment or block walked; past the limit, the file is refused."""
    for _ in range(limits.max_metadata_entries):
        yield
    raise _too_many_entries(limits)


def _too_many_entries(limits: FileLimits) -> ImageTooComplexError:
    return ImageTooComplexError(
        f"The file is made of more than {limits.max_metadata_entries:,} metadata entries, "
        "chunks or blocks; such files are not decoded."
    )


def check_frames(frames: int, limits: FileLimits) -> None:
    """Refuse an animation (or a TIFF's pages) beyond the limit: cheap to send, costly to walk."""
    if frames > limits.max_frames:
        raise TooManyFramesError(f"The image has more than {limits.max_frames} animation frames.")
