"""bench.robustness encodes its canvas letters as this browser exports a canvas.

The preprocessing speed benchmark decodes those files, and how a PNG was filtered sets most of
its decoding cost, so the benchmark's claim to measure "what the draw page sends" rests on this.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image
from playwright.sync_api import Browser

from bench.robustness import BROWSER_PNG_FILTER, CANVAS_SIDE, browser_png

# A black pen stroke on a transparent canvas, exported as the draw page exports its pad.
DRAW_AND_EXPORT = f"""
<canvas id="pad" width="{CANVAS_SIDE}" height="{CANVAS_SIDE}"></canvas>
<script>
  const pad = document.getElementById("pad");
  const pen = pad.getContext("2d");
  pen.lineWidth = 3;
  pen.lineCap = "round";
  pen.beginPath();
  pen.moveTo(80, 60);
  pen.bezierCurveTo(250, 40, 240, 250, 120, 230);
  pen.lineTo(60, 120);
  pen.stroke();
  window.exported = new Promise((resolve) => pad.toBlob((blob) =>
    blob.arrayBuffer().then((buffer) => resolve(Array.from(new Uint8Array(buffer))))));
</script>
"""


def chunks(png: bytes) -> dict[bytes, bytes]:
    """Chunk type -> body, with the IDAT chunks joined."""
    found: dict[bytes, bytes] = {}
    position = 8
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        found[kind] = found.get(kind, b"") + png[position + 8 : position + 8 + length]
        position += 12 + length
    return found


def test_bench_canvas_pngs_are_filtered_and_compressed_as_chromium_does(browser: Browser) -> None:
    page = browser.new_page()
    page.set_content(DRAW_AND_EXPORT)
    exported = bytes(page.evaluate("window.exported"))
    page.close()
    pixels = np.asarray(Image.open(io.BytesIO(exported)))
    assert pixels.shape == (CANVAS_SIDE, CANVAS_SIDE, 4) and pixels[:, :, 3].any()

    ours = browser_png(pixels)
    theirs_chunks, our_chunks = chunks(exported), chunks(ours)
    assert our_chunks[b"IHDR"] == theirs_chunks[b"IHDR"]
    # The zlib header's level field (bits 6-7 of the second byte) names the same speed setting.
    assert our_chunks[b"IDAT"][1] >> 6 == theirs_chunks[b"IDAT"][1] >> 6
    theirs_rows = zlib.decompress(theirs_chunks[b"IDAT"])
    assert set(theirs_rows[:: CANVAS_SIDE * 4 + 1]) == {BROWSER_PNG_FILTER}
    assert zlib.decompress(our_chunks[b"IDAT"]) == theirs_rows
    assert (np.asarray(Image.open(io.BytesIO(ours))) == pixels).all()
