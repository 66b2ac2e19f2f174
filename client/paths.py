"""Turn the paths a user names (files, folders, zips) into the list of files to upload."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
UPLOAD_EXTENSIONS = IMAGE_EXTENSIONS | {".zip"}


class PathError(ValueError):
    """A named path is missing or holds nothing to upload; the message says which."""


@dataclass(frozen=True)
class Upload:
    """One file to send and the name the server will report it under."""

    path: Path
    name: str


def expand_paths(paths: Iterable[Path | str | Upload]) -> list[Upload]:
    """Files are taken as named (the server judges them); folders give their images and zips.

    Folder entries are named relative to the folder so that same-named files in subfolders stay
    distinguishable in the results; a file named twice is sent once. Uploads pass through, so
    a caller can expand early (to report a bad path at once) and hand the result on.
    """
    uploads: list[Upload] = []
    seen: set[Path] = set()
    named = [path if isinstance(path, Upload) else Path(path) for path in paths]
    for path in named:
        if isinstance(path, Upload):
            found = [path]
        elif path.is_dir():
            found = [Upload(file, file.relative_to(path).as_posix()) for file in _walk(path)]
        elif path.is_file():
            found = [Upload(path, path.name)]
        else:
            raise PathError(f"no such file or folder: {path}")
        for upload in found:
            key = upload.path.resolve()
            if key not in seen:
                seen.add(key)
                uploads.append(upload)
    if not uploads:
        raise PathError(f"no image or zip files in: {', '.join(map(str, named)) or '(nothing)'}")
    return uploads


def _walk(folder: Path) -> list[Path]:
    """Uploadable files under a folder in a stable order, skipping hidden files and folders."""
    return sorted(
        file
        for file in folder.rglob("*")
        if file.is_file()
        and file.suffix.lower() in UPLOAD_EXTENSIONS
        and not any(part.startswith(".") for part in file.relative_to(folder).parts)
    )
