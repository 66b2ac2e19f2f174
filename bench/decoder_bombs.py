"""Decoder bombs: `python -m bench.decoder_bombs`.

Small crafted files (`bench.crafted_images`) that cost Pillow's parsers seconds or gigabytes,
each read by `ml.preprocess.to_model_input` in a process of its own: wall time, growth of the
process's peak memory, and the outcome. Copied to an earlier commit (with crafted_images.py),
it shows what the checks of `ml.file_structure` save.
Writes bench/results/decoder_bombs.json and decoder_bombs.md (`--label` names the code version).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from bench.crafted_images import (
    encode,
    exif_sharing_one_blob,
    gif_with_comment,
    gray_tiff,
    repeating_a_scan,
    run_length_jump_past_the_end,
    sharing_one_blob,
)
from bench.robustness import RESULTS_DIR

# A case that runs longer than this is stopped and reported as such.
TIMEOUT_S = 120
# Each case's process may not grow past this, so a bomb cannot take the machine down.
MEMORY_CAP_BYTES = 8 << 30
TAGS, BLOB = 2_000, 150_000
WHITE = Image.new("L", (8, 8), 255)


def progressive_white_page() -> bytes:
    return encode(Image.new("L", (2048, 2048), 255), "JPEG", progressive=True, quality=90)


def gif() -> bytes:
    return encode(WHITE, "GIF")


CASES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "tiff-shared-blob": (
        f"TIFF, {TAGS:,} tags pointing at one {BLOB // 1000} kB blob",
        lambda: gray_tiff(
            np.asarray(WHITE), extra=sharing_one_blob(TAGS, BLOB, 8), blob=bytes(BLOB)
        ),
    ),
    "png-exif-shared-blob": (
        "PNG, the same tags in its EXIF chunk",
        lambda: encode(WHITE, "PNG", exif=exif_sharing_one_blob(TAGS, BLOB)),
    ),
    "webp-exif-shared-blob": (
        "WebP, the same tags in its EXIF chunk",
        lambda: encode(WHITE.convert("RGB"), "WEBP", exif=exif_sharing_one_blob(TAGS, BLOB)),
    ),
    "jpeg-repeated-scan": (
        "progressive JPEG, 2048 x 2048, its last scan repeated 2,000 times",
        lambda: repeating_a_scan(progressive_white_page(), times=2_000),
    ),
    "gif-comment-pieces": (
        "GIF, a comment in 400,000 one-byte pieces",
        lambda: gif_with_comment(gif(), [b"a"] * 400_000),
    ),
    "gif-long-comment": (
        "GIF, a 10 MB comment in full pieces (a valid file)",
        lambda: gif_with_comment(gif(), [b"c" * 255] * 39_000),
    ),
    "tiff-strips": (
        "TIFF, 500,000 x 5 px in one-row strips",
        lambda: gray_tiff(np.zeros((500_000, 5), np.uint8), rows_per_strip=1),
    ),
    "bmp-run-length-jump": (
        "run-length BMP, 4,000,000 x 6 px, two jumps of 255 rows",
        lambda: run_length_jump_past_the_end(4_000_000, 6),
    ),
}


def run_case(name: str) -> dict:
    """Build one file and read it here: what this process spent on it."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))
    from ml.artifact import InputSpec
    from ml.preprocess import to_model_input

    data = CASES[name][1]()
    spec = InputSpec(mean=0.1736, std=0.3317)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        to_model_input(data, spec)
        outcome = "read"
    # Whatever the code version raises is the outcome being measured.
    except Exception as error:
        outcome = f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - start
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return {
        "file_bytes": len(data),
        "seconds": seconds,
        "memory_mb": grown_kb / 1024,
        "outcome": outcome,
    }


def measure(names: list[str]) -> dict:
    """Each case in a fresh process, so that one's memory never counts against the next."""
    results = {}
    for name in names:
        command = [sys.executable, "-m", "bench.decoder_bombs", "--case", name]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
            lines = done.stdout.strip().splitlines()
            results[name] = (
                json.loads(lines[-1])
                if done.returncode == 0 and lines
                else {
                    "outcome": f"process failed ({done.returncode}): {done.stderr.strip()[-200:]}"
                }
            )
        except subprocess.TimeoutExpired:
            results[name] = {"outcome": f"stopped after {TIMEOUT_S} s"}
        print(name, results[name], flush=True)
    return results


def markdown(report: dict) -> str:
    rows = [
        f"# Decoder bombs: {report['label']}",
        "",
        f"Measured {report['measured']} on {report['machine']}; each file read by "
        "`to_model_input` in its own process (memory: growth of its peak resident size).",
        "",
        "| case | file | seconds | memory (MB) | outcome |",
        "|---|---|---|---|---|",
    ]
    for name, result in report["cases"].items():
        size = f"{result['file_bytes']:,} B" if "file_bytes" in result else ""
        seconds = f"{result['seconds']:.3f}" if "seconds" in result else ""
        memory = f"{result['memory_mb']:,.0f}" if "memory_mb" in result else ""
        outcome = result["outcome"].replace("|", "/")[:120]
        rows.append(f"| {CASES[name][0]} | {size} | {seconds} | {memory} | {outcome} |")
    return "\n".join([*rows, ""])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), help="run one case here, print JSON")
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), help="cases to run")
    parser.add_argument("--label", default="this code", help="names the code version measured")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    report = {
        "label": args.label,
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "cases": measure(args.only or list(CASES)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoder_bombs.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "decoder_bombs.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
