"""The service benchmark in one command: `python -m bench.run [--quick] [--out FILE.json]`.

Measures, in one run on this machine: the model ceiling and preprocessing speed, then on a real
stack (own Postgres database and Redis keys, one Celery worker, the gateway, the naive endpoint)
a 10,000-image batch job and canvas clients at several concurrencies, each against the naive
one-request-one-forward-pass design. Writes the JSON results and a markdown report beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bench import model_speed, preprocess_speed
from bench.clients import batch_job, canvas_clients, one_request_each
from bench.cpu import Finder, cpu_used, processes_matching, these_processes
from bench.images import scan_pngs, zipped
from bench.report import markdown, save
from bench.stack import Stack, running_stack
from bench.targets import evaluate
from jobs import store
from jobs.db import session_scope
from jobs.settings import ROOT, Settings
from ml.artifact import WEIGHTS_FILE
from ml.data import DEFAULT_DATA_DIR

RESULTS = Path(__file__).resolve().parent / "results" / "service.json"
# Quick figures are not for quoting: they go where git ignores them, never over the real ones.
QUICK_RESULTS = Path(__file__).resolve().parent / "out" / "service-quick.json"
CANVAS_IMAGES = 64
WARMUP_S = 1.0


@dataclass(frozen=True)
class Sizes:
    """How much of each measurement a run does; --quick trades precision for time."""

    ceiling_seconds: float
    preprocess_images: int
    preprocess_rounds: int
    batch_images: int
    canvas_seconds: float
    clients: tuple[int, ...]
    naive_concurrency: int


FULL = Sizes(3.0, 200, 7, 10_000, 15.0, (1, 8, 32, 64), 8)
QUICK = Sizes(0.5, 50, 3, 1_000, 3.0, (1, 8, 32, 64), 8)


def shipped_models(models_dir: Path) -> list[str]:
    """The configured models that have weights in `models_dir`, in the configured order; a
    benchmark without any cannot run."""
    names = Settings().model_names
    models = [name for name in names if (models_dir / name / WEIGHTS_FILE).is_file()]
    if not models:
        raise SystemExit(f"no trained model in {models_dir}: train one or pass --models-dir")
    return models


def model_ceiling(models_dir: Path, models: list[str], seconds: float) -> dict:
    """Forward-pass characters/s per model and batch size: bench.model_speed on these models."""
    return model_speed.measure([models_dir / name for name in models], seconds)


def stack_settings(
    args: argparse.Namespace, models: list[str], images: int, archive_bytes: int
) -> dict:
    """The service's own defaults, widened only where one 10,000-image job needs it."""
    defaults = Settings()
    return {
        "models_dir": args.models_dir,
        "model_names": models,
        "default_model": models[0],
        "max_files": max(defaults.max_files, images),
        "max_zip_entries": max(defaults.max_zip_entries, images),
        "max_request_bytes": max(defaults.max_request_bytes, 2 * archive_bytes),
        **dict(pair.split("=", 1) for pair in args.set),
    }


def batch_sizes_since(stack: Stack, since: datetime, coalesced: bool) -> dict:
    """How many forward passes the worker ran since `since`, and their mean size."""
    with session_scope(stack.settings.database_url) as session:
        sizes = store.batch_sizes(session, since=since, coalesced=coalesced)
    return {
        "forward_passes": len(sizes),
        "mean_batch_size": round(sum(sizes) / len(sizes), 2) if sizes else 0.0,
    }


def cpu_parts(stack: Stack) -> dict[str, Finder]:
    """Every process that serves a request on this machine, the benchmark's own client too."""
    database = stack.settings.database_url.rsplit("/", 1)[-1]
    pids: dict[str, list[int]] = {}
    for name, child in stack.processes.items():
        pids.setdefault(name.split("-")[0], []).append(child.pid)  # worker-2 counts as worker
    return {
        **{name: these_processes(*group) for name, group in pids.items()},
        "client": these_processes(os.getpid()),
        "postgres": processes_matching("postgres:", database),
        "redis": processes_matching("redis-server"),
    }


async def measure_service(
    stack: Stack, sizes: Sizes, canvas: list[bytes], scans: list[bytes], archive: bytes
) -> dict:
    """Batch job and canvas phases, each with the naive design right after it."""
    parts = cpu_parts(stack)
    predict_url = f"{stack.gateway_url}/api/v1/predict"
    naive_url = f"{stack.naive_url}/predict"
    model = stack.settings.default_model
    for url in (predict_url, naive_url):
        await canvas_clients(url, canvas, 4, WARMUP_S)
    cpu: dict[str, dict[str, float]] = {}
    with cpu_used(parts, cpu.setdefault("batch_job_service", {})):
        since = datetime.now(UTC)
        service = await batch_job(stack.gateway_url, archive, len(scans), model)
    service |= batch_sizes_since(stack, since, coalesced=False)
    with cpu_used(parts, cpu.setdefault("batch_job_naive", {})):
        naive = await one_request_each(naive_url, scans, sizes.naive_concurrency)
    levels = {}
    for clients in sizes.clients:
        with cpu_used(parts, cpu.setdefault(f"canvas_{clients}_service", {})):
            since = datetime.now(UTC)
            level = await canvas_clients(predict_url, canvas, clients, sizes.canvas_seconds)
        level |= batch_sizes_since(stack, since, coalesced=True)
        with cpu_used(parts, cpu.setdefault(f"canvas_{clients}_naive", {})):
            naive_level = await canvas_clients(naive_url, canvas, clients, sizes.canvas_seconds)
        levels[str(clients)] = {"service": level, "naive": naive_level}
    return {
        "batch_job": {"model": model, "service": service, "naive": naive},
        "canvas": {"seconds": sizes.canvas_seconds, "levels": levels},
        "cpu_seconds": cpu,
    }


def commit() -> str:
    """The checked-out commit, marked when the tree has changes, so a figure can be traced."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    return f"{head}{'+changes' if dirty else ''}" or "unknown"


def sizes_for(args: argparse.Namespace) -> Sizes:
    """The full or quick sizes, with what the command line names instead."""
    base = QUICK if args.quick else FULL
    return replace(
        base,
        batch_images=args.batch_images or base.batch_images,
        canvas_seconds=args.canvas_seconds or base.canvas_seconds,
        clients=tuple(args.clients or base.clients),
    )


def run(args: argparse.Namespace) -> dict:
    sizes = sizes_for(args)
    models = shipped_models(args.models_dir)
    load_before = os.getloadavg()[0]
    started = datetime.now(UTC)
    ceiling = model_ceiling(args.models_dir, models, sizes.ceiling_seconds)
    preprocessing = preprocess_speed.measure(
        args.data_dir, sizes.preprocess_images, sizes.preprocess_rounds
    )
    canvas = preprocess_speed.canvas_pngs(args.data_dir, CANVAS_IMAGES)
    scans = scan_pngs(args.data_dir, sizes.batch_images)
    archive = zipped(scans)
    overrides = stack_settings(args, models, len(scans), len(archive))
    with running_stack(overrides, args.workers) as stack:
        service = asyncio.run(measure_service(stack, sizes, canvas, scans, archive))
        settings = stack.settings.model_dump(
            include={"torch_threads", "worker_concurrency", "coalesce_max_batch",
                     "coalesce_max_wait_ms", "inference_batch_size", "job_task_items",
                     "predict_wait_s"}
        )  # fmt: skip
    results = {
        "measured": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "commit": commit(),
        "machine": ceiling["machine"],
        "cores": os.cpu_count(),
        "workers": args.workers,
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "settings": settings,
        "model_ceiling": ceiling,
        "preprocessing": preprocessing,
        **service,
    }
    results["targets"] = evaluate(results)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    defaults = f"{RESULTS.relative_to(ROOT)}, with --quick {QUICK_RESULTS.relative_to(ROOT)}"
    parser.add_argument("--out", type=Path, help=f"results JSON, .md beside it ({defaults})")
    add_stack_options(parser)
    parser.add_argument("--batch-images", type=int, help="images in the batch job")
    parser.add_argument("--canvas-seconds", type=float, help="seconds per canvas load")
    parser.add_argument("--clients", type=int, nargs="+", help="canvas client counts")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    return parser.parse_args(argv)


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    """Where the models and data are, and service settings: what `stack_settings` reads."""
    parser.add_argument("--models-dir", type=Path, default=Settings().models_dir)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a service setting for the stack, e.g. torch_threads=1 (repeatable)",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    results = run(args)
    save(out, results, markdown(results))


if __name__ == "__main__":
    main()
