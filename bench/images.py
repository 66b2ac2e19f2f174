"""The batch job's images: real pool47 test letters as small scans, in one zip archive.

Dark ink on white paper, enlarged 4x, grey PNG: cheap to make 10,000 of, and they go through the
same decoding and preprocessing as any scan. (Canvas drawings come from
`bench.preprocess_speed.canvas_pngs`.)
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image

from ml.data import load_split

SCAN_SIDE = 112


def scan_pngs(data_dir: Path, count: int) -> list[bytes]:
    """The first `count` pool47 test letters (cycled when more are asked) as scanned PNGs."""
    images = load_split(data_dir, "pool47", "test").images
    pngs = []
    for index in range(count):
        letter = Image.fromarray(255 - images[index % len(images)])
        buffer = io.BytesIO()
        letter.resize((SCAN_SIDE, SCAN_SIDE), Image.Resampling.BICUBIC).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def zipped(pngs: list[bytes]) -> bytes:
    """One archive of the files, stored uncompressed (PNG already is), as a scanner exports."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, data in enumerate(pngs):
            archive.writestr(f"scan_{index:05d}.png", data)
    return buffer.getvalue()
