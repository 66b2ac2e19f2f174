"""How one large batch job spreads over worker processes: `python -m bench.job_spread`.

One job of 10,000 scans (one zip) on a real stack (own Postgres database and Redis keys) with 1
and then 2 Celery worker processes, sent as one task for the whole job and as tasks of
`HWR_JOB_TASK_ITEMS` (the default) items each; the median of a few runs per setup. Writes the
JSON results and a markdown table beside them (`--out`; tests write theirs elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from datetime import UTC, datetime
from pathlib import Path

from bench.clients import batch_job
from bench.images import scan_pngs, zipped
from bench.report import save
from bench.run import add_stack_options, commit, shipped_models, stack_settings
from bench.stack import running_stack
from jobs.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "job_spread.json"


def measure(args: argparse.Namespace) -> dict:
    models = shipped_models(args.models_dir)
    scans = scan_pngs(args.data_dir, args.images)
    archive = zipped(scans)
    overrides = stack_settings(args, models, len(scans), len(archive))
    setups = []
    for workers in args.workers:
        for task_items in (len(scans), args.task_items):
            with running_stack({**overrides, "job_task_items": task_items}, workers) as stack:
                jobs = [
                    asyncio.run(batch_job(stack.gateway_url, archive, len(scans), models[0]))
                    for _ in range(args.repeats)
                ]
            seconds = statistics.median(job["seconds"] for job in jobs)
            setups.append(
                {
                    "workers": workers,
                    "task_items": task_items,
                    "tasks": -(-len(scans) // task_items),
                    "median_seconds": seconds,
                    "characters_per_second": round(len(scans) / seconds, 1),
                    "errors": sum(job["errors"] for job in jobs),
                    "jobs": jobs,
                }
            )
    return {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "cores": os.cpu_count(),
        "images": len(scans),
        "repeats": args.repeats,
        "model": models[0],
        "setups": setups,
    }


def markdown(results: dict) -> str:
    """The table, each setup's rate also as a ratio to one worker running the job as one task."""
    baseline = results["setups"][0]["characters_per_second"]
    rows = [
        "# One batch job over worker processes",
        "",
        f"Measured {results['measured']} at {results['commit']}, {results['cores']} cores: one job "
        f"of {results['images']:,} scans (one zip, `{results['model']}`), timed from upload to "
        f"the poll that sees it finished; median of {results['repeats']} jobs per setup.",
        "",
        "| worker processes | items per task | tasks | median s | characters/s "
        "| vs one task, one worker | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setup in results["setups"]:
        rows.append(
            f"| {setup['workers']} | {setup['task_items']:,} | {setup['tasks']} | "
            f"{setup['median_seconds']:.2f} | {setup['characters_per_second']:,.0f} | "
            f"{setup['characters_per_second'] / baseline:.2f} | {setup['errors']} |"
        )
    return "\n".join(rows) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON, .md beside it")
    add_stack_options(parser)
    parser.add_argument("--images", type=int, default=10_000, help="images in the job")
    parser.add_argument("--repeats", type=int, default=3, help="jobs per setup")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes")
    parser.add_argument(
        "--task-items", type=int, default=Settings().job_task_items,
        help="items per task when the job is split (default: the service's)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = measure(args)
    save(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
