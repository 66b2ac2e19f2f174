"""A file httpx can stream into a multipart body while the caller watches the bytes go out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class ProgressFile:
    """Opened only while it is being read, so a batch of thousands of files holds one descriptor.

    httpx sizes the body with tell/seek and then reads in chunks as it sends; each chunk read is
    reported to `on_read` with its length.
    """

    def __init__(self, path: Path, on_read: Callable[[int], None]) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._on_read = on_read
        self._position = 0
        self._file: BinaryIO | None = None

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        origin = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        self._position = origin + offset
        return self._position

    def read(self, size: int = -1) -> bytes:
        if self._file is None:
            self._file = self.path.open("rb")
        self._file.seek(self._position)
        chunk = self._file.read(size)
        self._position += len(chunk)
        if chunk:
            self._on_read(len(chunk))
        else:
            self.close()
        return chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
