"""Forward-pass throughput of each shipped model: `python -m bench.model_speed`.

The model ceiling every service figure is compared against: characters per second through
`Predictor.probabilities` at batch 1, 32 and 256, median of repeated timed runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ml import Predictor, load_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BATCH_SIZES = (1, 32, 256)


def machine_line() -> str:
    """One line describing where a figure was measured."""
    processor = platform.processor() or platform.machine()
    return f"{processor}, {os.cpu_count()} cores, torch {torch.__version__}"


def characters_per_second(
    predictor: Predictor, batch: int, seconds: float, rounds: int = 5
) -> float:
    """Median throughput over `rounds` timed runs of about `seconds / rounds` each."""
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((batch, 28, 28)).astype(np.float32)
    for _ in range(3):
        predictor.probabilities(inputs)
    rates = []
    for _ in range(rounds):
        done, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / rounds:
            predictor.probabilities(inputs)
            done += batch
        rates.append(done / elapsed)
    return statistics.median(rates)


def measure(models: list[str | Path], seconds: float) -> dict:
    """Characters/s per model, torch thread count (1 and one per core) and batch size.

    Both thread counts are kept because on a busy machine more threads can be far slower; that
    is the evidence behind the worker's `torch_threads`. The ceiling per model is the best.
    """
    by_threads: dict[str, dict[str, dict[str, int]]] = {}
    precision = ""
    for threads in sorted({1, os.cpu_count() or 1}):
        rates = by_threads.setdefault(str(threads), {})
        for model in models:
            predictor = Predictor(load_model(model), device="cpu", threads=threads)
            precision = predictor.precision
            rates[Path(model).name] = {
                str(batch): round(characters_per_second(predictor, batch, seconds))
                for batch in BATCH_SIZES
            }
    best = {
        name: {batch: max(rates[name][batch] for rates in by_threads.values()) for batch in rate}
        for name, rate in by_threads["1"].items()
    }
    return {
        "machine": machine_line(),
        "precision": precision,
        "models": best,
        "by_threads": by_threads,
    }


def to_markdown(results: dict) -> str:
    header = "| model | torch threads | " + " | ".join(f"batch {b}" for b in BATCH_SIZES) + " |"
    rows = [header, "|---|---:|" + "---:|" * len(BATCH_SIZES)]
    for threads, models in results["by_threads"].items():
        for name, rates in models.items():
            cells = " | ".join(f"{rates[str(b)]:,}/s" for b in BATCH_SIZES)
            rows.append(f"| {name} | {threads} | {cells} |")
    note = (
        f"Characters per second, forward pass only, {results['precision']} "
        f"(`HWR_INFERENCE_PRECISION=auto`). {results['machine']}."
    )
    return "\n".join(rows) + f"\n\n{note}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["emnist47", "emnist62"])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per batch size")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "model_speed.json")
    args = parser.parse_args(argv)
    results = measure(args.models, args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(results))
    print(to_markdown(results))


if __name__ == "__main__":
    main()
