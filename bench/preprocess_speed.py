"""Preprocessing throughput per CPU core: `python -m bench.preprocess_speed`.

The images are what the draw page sends: 280x280 PNGs with a transparent background and a
1-3 px pen stroke (pool47 test letters drawn by `bench.robustness.pen_canvas`), encoded as
Chromium encodes a canvas export. Rates are
images per CPU-second of this one thread (so a busy machine does not count against it), median
of repeated rounds, for decoding alone (by libspng, which preprocessing uses for such PNGs, and
by Pillow, which it uses for the rest) and for the whole of `to_model_input`.
Writes bench/results/preprocess_speed.json and preprocess_speed.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL
import pyspng
from PIL import Image

from bench.robustness import RESULTS_DIR, pen_canvas
from ml.artifact import InputSpec
from ml.data import DEFAULT_DATA_DIR, load_split
from ml.preprocess import to_model_input

IMAGES = 200
ROUNDS = 7
TARGET_PER_CORE = 2000
# EMNIST's pixel statistics; the rate does not depend on them.
SPEC = InputSpec(mean=0.1736, std=0.3317)


def canvas_pngs(data_dir: Path, count: int) -> list[bytes]:
    """Browser-canvas exports of the first `count` pool47 test letters."""
    images = load_split(data_dir, "pool47", "test").images[:count]
    return [pen_canvas(pixels, np.random.default_rng(index)) for index, pixels in enumerate(images)]


def decode_libspng(data: bytes) -> None:
    """Decoding as preprocessing does it for canvas exports."""
    pyspng.load(data, format="RGBA")


def decode_pillow(data: bytes) -> None:
    """Decoding as preprocessing did it before libspng, and still does for other PNGs."""
    Image.open(io.BytesIO(data)).load()


def preprocess(data: bytes) -> None:
    to_model_input(data, SPEC)


def per_core_rate(work: Callable[[bytes], None], files: list[bytes], rounds: int) -> dict:
    """Images per CPU-second (median and best of `rounds`) and per wall-clock second."""
    for data in files[:20]:
        work(data)
    cpu_rates, wall_rates = [], []
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        for data in files:
            work(data)
        cpu_rates.append(len(files) / (time.process_time() - cpu))
        wall_rates.append(len(files) / (time.perf_counter() - wall))
    return {
        "per_cpu_second_median": round(statistics.median(cpu_rates)),
        "per_cpu_second_best": round(max(cpu_rates)),
        "per_wall_second_median": round(statistics.median(wall_rates)),
    }


def measure(data_dir: Path, count: int, rounds: int) -> dict:
    files = canvas_pngs(data_dir, count)
    decode = per_core_rate(decode_libspng, files, rounds)
    pillow = per_core_rate(decode_pillow, files, rounds)
    full = per_core_rate(preprocess, files, rounds)
    rate = full["per_cpu_second_median"]
    return {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}, Pillow {PIL.__version__}",
        "images": len(files),
        "mean_file_bytes": round(float(np.mean([len(data) for data in files]))),
        "rounds": rounds,
        "decode_libspng": decode,
        "decode_pillow": pillow,
        "to_model_input": full,
        "target_per_core": TARGET_PER_CORE,
        "meets_target": rate >= TARGET_PER_CORE,
        "preprocessing_share_microseconds": round(
            1e6 / rate - 1e6 / decode["per_cpu_second_median"]
        ),
    }


def markdown(results: dict) -> str:
    """The figures as a table for humans; the JSON beside it holds the same."""
    rows = [
        "# Preprocessing speed: 280x280 transparent canvas PNGs, one thread",
        "",
        f"{results['images']} files (mean {results['mean_file_bytes']} bytes), "
        f"{results['rounds']} rounds, measured {results['measured']} on {results['machine']}.",
        "",
        "| step | images per CPU-second (median) | best round | images per wall second |",
        "|---|---|---|---|",
    ]
    for name in ("decode_libspng", "decode_pillow", "to_model_input"):
        rates = results[name]
        rows.append(
            f"| {name} | {rates['per_cpu_second_median']:,} | {rates['per_cpu_second_best']:,} "
            f"| {rates['per_wall_second_median']:,} |"
        )
    rows += [
        "",
        f"Target {results['target_per_core']:,} per core: "
        f"{'met' if results['meets_target'] else 'not met'}. Everything after decoding costs "
        f"{results['preprocessing_share_microseconds']} us per image.",
        "",
    ]
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = measure(args.data_dir, args.images, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "preprocess_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "preprocess_speed.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
