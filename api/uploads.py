"""Turning an upload into job items, before anything is accepted.

Content is sniffed, never trusted from the name. A bad image fails alone as an item with its
reason, and so does an archive entry whose name leads out of the archive; what threatens the
service (too many files, zip bombs, nested archives) rejects the whole request. Only headers
and file structure are read here (`ml.preprocess.read_header`, the worker's own checks):
decoding is the worker's job.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass

from fastapi import HTTPException, UploadFile

from jobs.settings import Settings
from jobs.store import NewItem
from ml.image_errors import PreprocessError
from ml.preprocess import read_header

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
ARCHIVE_MAGIC = (*ZIP_MAGIC, b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"7z\xbc\xaf", b"Rar!")
IGNORED_ZIP_PREFIXES = ("__MACOSX/",)
ESCAPING_ENTRY = "The entry's name leads out of the archive (absolute or with ..); it was not read."
MB = 1_000_000


@dataclass(frozen=True)
class Upload:
    """The items of one request and a digest of its content, for idempotency checks."""

    items: list[NewItem]
    digest: str


def read_upload(files: list[UploadFile], model: str, settings: Settings) -> Upload:
    digest = hashlib.sha256(model.encode())
    items: list[NewItem] = []
    for upload in files:
        name = upload.filename or "upload"
        data = upload.file.read()
        digest.update(f"{len(name)}:{name}:{len(data)}:".encode() + data)
        if data.startswith(ZIP_MAGIC):
            items.extend(_expand_zip(name, data, settings))
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


def _expand_zip(name: str, data: bytes, settings: Settings) -> list[NewItem]:
    """The images in an archive, read with a budget so a lying header cannot blow it up."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
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
    too_big = HTTPException(
        413, f"{name} expands to more than the {settings.max_zip_bytes / MB:g} MB allowed."
    )
    if sum(entry.file_size for entry in entries) > settings.max_zip_bytes:
        raise too_big
    budget = settings.max_zip_bytes
    items = []
    for entry in entries:
        entry_name = f"{name}/{entry.filename}"
        if _escapes_archive(entry.filename):
            items.append(NewItem(entry_name, error=ESCAPING_ENTRY))
            continue
        try:
            with archive.open(entry) as stream:
                content = stream.read(min(settings.max_file_bytes, budget) + 1)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as error:
            items.append(NewItem(entry_name, error=f"Could not be extracted: {error}."))
            continue
        if len(content) > budget:
            raise too_big
        budget -= len(content)
        if content.startswith(ARCHIVE_MAGIC):
            raise HTTPException(422, f"{entry_name}: archives inside archives are not accepted.")
        items.append(_sniff_image(entry_name, content, settings))
    return items


def _escapes_archive(entry_name: str) -> bool:
    """A zip-slip name: nothing here unpacks to disk, but only a crafted archive holds one."""
    path = entry_name.replace("\\", "/")
    return path.startswith("/") or path[1:2] == ":" or ".." in path.split("/")
