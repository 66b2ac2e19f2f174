"""A corpus of crafted files, built here: each is refused with a clear reason, nothing else is hurt.

A hostile file inside a job fails alone with its message while a real letter beside it is read;
one that threatens the service refuses the whole request with a 4xx, and the service goes on.
Elsewhere: empty, truncated and oversized files (test_service.test_bad_files_fail_alone), zip
bombs with honest headers, zips in zips and too many entries (test_request_level_rejections).
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from bench.crafted_images import (
    encode,
    exif_sharing_one_blob,
    gif_with_comment,
    repeating_a_scan,
)
from tests.service.test_service import upload, wait_for, zip_of

JOBS = "/api/v1/jobs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# One 1x1 GIF frame: image descriptor, then LZW data for one pixel (minimum code size 2).
GIF_FRAME = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
GIF_HEADER = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def black_png(width: int, height: int, rows: int) -> bytes:
    """A 1-bit grey PNG declaring `width` x `height` that holds `rows` rows of pixels."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress((b"\x00" + bytes((width + 7) // 8)) * rows, 9)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def decompression_bomb() -> bytes:
    """A few hundred bytes declaring 10 gigapixels."""
    return black_png(100_000, 100_000, rows=1)


def hundred_megapixels() -> bytes:
    """A complete, valid 10000 x 10000 image: about 2 kB of PNG."""
    return black_png(10_000, 10_000, rows=10_000)


def animation(frames: int) -> bytes:
    return GIF_HEADER + GIF_FRAME * frames + b"\x3b"


def lying_zip_bomb(size: int) -> bytes:
    """`size` zero bytes in a zip whose directory claims 100: a check of headers alone passes."""
    archive = bytearray(zip_of({"zeros.png": bytes(size)}))
    directory = archive.rindex(b"PK\x01\x02")
    archive[directory + 24 : directory + 28] = struct.pack("<I", 100)
    return bytes(archive)


def broken_deflate(png: bytes) -> bytes:
    """A zip whose one entry's compressed stream starts with a block type deflate reserves."""
    archive = bytearray(zip_of({"a.png": png}))
    archive[30 + len("a.png")] = 0xFF
    return bytes(archive)


def undecodable_name(png: bytes) -> bytes:
    """A zip flagged as naming its entries in UTF-8, with a name that is not UTF-8."""
    archive = bytearray(zip_of({"\u00e9.png": png}))
    for at in (archive.index(b"\xc3\xa9"), archive.rindex(b"\xc3\xa9")):
        archive[at : at + 2] = b"\xff\xfe"
    return bytes(archive)


def converted(png: bytes, file_format: str, **options: object) -> bytes:
    return encode(Image.open(io.BytesIO(png)), file_format, **options)


def tar_gz(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# name, its bytes (built from the good PNG), and the message its failed item must carry; None
# when the file is to be read like any image.
ITEM_CORPUS: list[tuple[str, Callable[[bytes], bytes], str | None]] = [
    ("bomb.png", lambda _: decompression_bomb(), "megapixels; the limit is"),
    ("100mp.png", lambda _: hundred_megapixels(), "megapixels; the limit is"),
    ("frames.gif", lambda _: animation(5000), "more than 100 animation frames"),
    # Decoder bombs: a few kilobytes that would cost Pillow seconds or gigabytes.
    (
        "scans.jpg",
        lambda png: repeating_a_scan(converted(png, "JPEG", progressive=True), times=500),
        "more than 100 progressive scans",
    ),
    (
        "exif.png",
        lambda png: converted(png, "PNG", exif=exif_sharing_one_blob(tags=300, blob=50_000)),
        "same bytes many times",
    ),
    (
        "pieces.gif",
        lambda png: gif_with_comment(converted(png, "GIF"), [b"a"] * 12_000),
        "more than 10,000 metadata entries",
    ),
    # A long comment is no reason to refuse a GIF: the decoder is handed its image alone.
    (
        "comment.gif",
        lambda png: gif_with_comment(converted(png, "GIF"), [b"c" * 255] * 600),
        None,
    ),
    ("lying.zip/zeros.png", lambda _: lying_zip_bomb(3_000_000), "Could not be extracted"),
    ("inflate.zip/a.png", broken_deflate, "Could not be extracted"),
    ("slip.zip/../../evil.png", lambda png: zip_of({"../../evil.png": png}), "leads out"),
    ("abs.zip//etc/evil.png", lambda png: zip_of({"/etc/evil.png": png}), "leads out"),
    ("windows.zip/..\\evil.png", lambda png: zip_of({"..\\evil.png": png}), "leads out"),
    # Content is sniffed: the name's extension never decides how a file is read.
    ("renamed.jpg", lambda png: png, None),
    # A file is what its first bytes say: a PNG with a zip appended is that PNG, never unzipped.
    ("polyglot.png", lambda png: png + zip_of({"hidden.png": png}), None),
]


@pytest.mark.parametrize(
    ("filename", "build", "message"),
    ITEM_CORPUS,
    ids=[name.split("/")[0].split(".")[0] for name, _, _ in ITEM_CORPUS],
)
def test_a_crafted_file_fails_alone_in_its_job(
    http: httpx.Client,
    good_png: bytes,
    filename: str,
    build: Callable[[bytes], bytes],
    message: str | None,
):
    uploaded_as = filename.split("/")[0]
    files = upload(("good.png", good_png), (uploaded_as, build(good_png)))
    response = http.post(JOBS, files=files)
    assert response.status_code == 202, response.text
    job = wait_for(http, response.json()["id"])
    assert job["status"] == "succeeded"
    items = {item["filename"]: item for item in job["results"]["items"]}
    assert list(items) == ["good.png", filename]
    assert items["good.png"]["status"] == "succeeded"
    crafted = items[filename]
    if message is None:
        assert crafted["status"] == "succeeded", crafted["error"]
        assert crafted["prediction"] == items["good.png"]["prediction"]
    else:
        assert crafted["status"] == "failed"
        assert message in crafted["error"]


@pytest.mark.parametrize(
    ("files", "data", "status", "message"),
    [
        pytest.param(
            upload(("nested.zip", zip_of({"inner.tar.gz": tar_gz({"a.png": b"x"})}))), {},
            422, "archives inside archives", id="tar-gz-in-zip",
        ),
        pytest.param(
            upload(("name.zip", undecodable_name(b"x"))), {},
            422, "not a readable zip", id="undecodable-entry-name",
        ),
        pytest.param(
            upload(("records.zip", zip_of({f"{i}": b"" for i in range(1000)}))), {},
            413, "far more entries", id="zip-records-past-any-limit",
        ),
        pytest.param(
            upload(("a.png", b"x")), {"model": "x" * 2_000_000},
            400, "exceeded maximum size", id="huge-field",
        ),
        pytest.param(
            upload(("a" * 100_000 + ".png", b"x")), {}, 400, "multipart", id="huge-part-header"
        ),
        pytest.param(
            upload(("a.png", b"x")), {f"field{i}": "" for i in range(2000)},
            400, "Too many fields", id="many-fields",
        ),
    ],
)  # fmt: skip
def test_a_crafted_request_is_refused_and_the_service_goes_on(
    http: httpx.Client, good_png: bytes, files: list, data: dict, status: int, message: str
):
    response = http.post(JOBS, files=files, data=data)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    after = http.post(JOBS, files=upload(("good.png", good_png)))
    assert after.status_code == 202, after.text
    assert wait_for(http, after.json()["id"])["progress"] == {"total": 1, "done": 1, "failed": 0}
