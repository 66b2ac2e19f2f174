"""Turning an upload into job items, before anything is accepted.

Content is sniffed, never trusted from the name. A bad image fails alone as an item with its
reason, and so does an archive entry whose name leads out of the archive or that cannot be
extracted; what threatens the service (too many files, zip bombs, more unzipped bytes in one
request than `max_zip_bytes`, nested archives) rejects the whole request. Only headers and file
structure are read here (`ml.preprocess.read_header`, the worker's own checks): decoding is the
worker's job.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
import zipfile
from dataclasses import dataclass

from fastapi import HTTPException, UploadFile

from jobs.settings import Settings
from jobs.store import NewItem
from ml.image_errors import PreprocessError
from ml.preprocess import read_header

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# Every entry zipfile lists has a central directory record starting so; counting them bounds the
# work of listing an archive before zipfile builds an object for each.
CENTRAL_DIRECTORY_RECORD = b"PK\x01\x02"
# Records allowed per image allowed: room for folders and a Mac's __MACOSX copy of each file.
RECORDS_PER_ENTRY = 3
ARCHIVE_MAGIC = (*ZIP_MAGIC, b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"7z\xbc\xaf", b"Rar!")
IGNORED_ZIP_PREFIXES = ("__MACOSX/",)
# Unicode's explicit bidi embeddings, overrides and isolates (not the plain LRM/RLM marks).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ESCAPING_ENTRY = "The entry's name leads out of the archive (absolute or with ..); it was not read."
MB = 1_000_000


@dataclass(frozen=True)
class Upload:
    """The items of one request and a digest of its content, for idempotency checks."""

    items: list[NewItem]
    digest: str


class _UnzipBudget:
    """The uncompressed bytes the zips of one request may still yield (`max_zip_bytes` in all)."""

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.max_zip_bytes
        self.left = settings.max_zip_bytes

    def check(self, size: int, archive: str) -> None:
        """413 when `archive` would need `size` bytes more than are left."""
        if size > self.left:
            raise HTTPException(
                413,
                f"{archive} expands to more than the {self.limit / MB:g} MB allowed "
                "for all the zip archives of one request.",
            )

    def spend(self, size: int, archive: str) -> None:
        self.check(size, archive)
        self.left -= size


def read_upload(files: list[UploadFile], model: str, settings: Settings) -> Upload:
    digest = hashlib.sha256(model.encode())
    items: list[NewItem] = []
    budget = _UnzipBudget(settings)
    for upload in files:
        name = _printable(upload.filename or "upload")
        data = upload.file.read()
        digest.update(f"{len(name)}:{name}:{len(data)}:".encode() + data)
        if data.startswith(ZIP_MAGIC):
            items.extend(_expand_zip(name, data, settings, budget))
        else:
            items.append(_sniff_image(name, data, settings))
        if len(items) > settings.max_files:
            raise HTTPException(413, f"Too many images: at most {settings.max_files} per job.")
    if not items:
        raise HTTPException(422, "No images: send at least one image file or zip archive.")
    return Upload(items, digest.hexdigest())


def _sniff_image(name: str, data: bytes, settings: Settings) -> NewItem:
    if not data:
        return NewItem(name, error="The file is empty.")
    if len(data) > settings.max_file_bytes:
        limit = settings.max_file_bytes / MB
        return NewItem(name, error=f"The file is larger than the {limit:g} MB limit per image.")
    try:
        read_header(data, settings.file_limits())
    except PreprocessError as error:
        return NewItem(name, error=error.message)
    return NewItem(name, data=data)


def _expand_zip(name: str, data: bytes, settings: Settings, budget: _UnzipBudget) -> list[NewItem]:
    """The images in an archive, read within the request's budget so a lying header cannot blow
    it up. Any failure of zipfile on a crafted archive (it raises zlib, LZMA, EOF and Unicode
    errors as well as its own) refuses the archive, or fails the one entry it was reading."""
    if data.count(CENTRAL_DIRECTORY_RECORD) > RECORDS_PER_ENTRY * settings.max_zip_entries:
        raise HTTPException(
            413, f"{name} has far more entries than the {settings.max_zip_entries} allowed."
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - whatever zipfile raises, the archive is unreadable
        raise HTTPException(422, f"{name} is not a readable zip archive.") from error
    entries = [
        entry
        for entry in archive.infolist()
        if not entry.is_dir() and not entry.filename.startswith(IGNORED_ZIP_PREFIXES)
    ]
    if len(entries) > settings.max_zip_entries:
        raise HTTPException(
            413,
            f"{name} has {len(entries)} entries, more than the {settings.max_zip_entries} allowed.",
        )
    budget.check(sum(entry.file_size for entry in entries), name)
    items = []
    for entry in entries:
        entry_name = _printable(f"{name}/{entry.filename}")
        if _escapes_archive(entry.filename):
            items.append(NewItem(entry_name, error=ESCAPING_ENTRY))
            continue
        try:
            with archive.open(entry) as stream:
                content = stream.read(min(settings.max_file_bytes, budget.left) + 1)
        except Exception as error:  # noqa: BLE001 - see the docstring
            items.append(NewItem(entry_name, error=f"Could not be extracted: {error}."))
            continue
        budget.spend(len(content), name)
        if content.startswith(ARCHIVE_MAGIC):
            raise HTTPException(422, f"{entry_name}: archives inside archives are not accepted.")
        items.append(_sniff_image(entry_name, content, settings))
    return items


def _printable(name: str) -> str:
    """The name with control characters (NUL, escapes, newlines) and bidi overrides shown as
    U+FFFD: databases, CSV files and terminals each choke on some of them, and an override makes
    a name display as another (`gnp.exe` for `exe.png`)."""
    return "".join(
        "\ufffd" if unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS else c for c in name
    )


def _escapes_archive(entry_name: str) -> bool:
    """A zip-slip name: nothing here unpacks to disk, but only a crafted archive holds one."""
    path = entry_name.replace("\\", "/")
    return path.startswith("/") or path[1:2] == ":" or ".." in path.split("/")
