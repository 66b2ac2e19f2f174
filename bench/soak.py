"""A bounded soak of the real stack: `python -m bench.soak [--quick] [--out FILE.json]`.

Canvas drawings go to /api/v1/predict at a fixed rate and batch jobs of scanned letters are
uploaded at a fixed interval, every unfinished job polled as a client would, so each run sends
a fixed number of requests in a fixed time (later only if the service falls behind). It passes
when no accepted job is lost (the database agrees with what the clients were told), no request
got a 5xx or a broken connection, and the worker's resident memory grew by at most 10% between
the end of the warm-up (the first third) and the end of the run. Exits 1 when it does not pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import httpx
from sqlalchemy import func, select

from bench.clients import FINISHED, latency_summary
from bench.images import scan_pngs, zipped
from bench.preprocess_speed import canvas_pngs
from bench.report import save
from bench.run import commit, shipped_models
from bench.stack import Stack, running_stack
from jobs.db import session_scope
from jobs.schema import Job, Result
from jobs.settings import ROOT, Settings
from ml.data import DEFAULT_DATA_DIR

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
# Quick figures are not for quoting: they go where git ignores them, never over the real ones.
QUICK_RESULTS = Path(__file__).resolve().parent / "out" / "soak-quick.json"
CANVAS_IMAGES = 64
POLL_S = 1.0
DRAIN_S = 120.0
TIMEOUT_S = 60.0
MAX_MEMORY_GROWTH = 0.10
PROC = Path("/proc")


@dataclass(frozen=True)
class Plan:
    """The load: well inside what 2 cores serve, so a growing backlog would show as a failure."""

    seconds: float
    canvas_per_second: float
    canvas_clients: int
    batch_every_s: float
    batch_images: int
    sample_every_s: float

    @property
    def canvas_requests(self) -> int:
        return round(self.seconds * self.canvas_per_second)

    @property
    def batch_jobs(self) -> int:
        return round(self.seconds / self.batch_every_s)

    @property
    def warmup_s(self) -> float:
        return self.seconds / 3

    @property
    def window_s(self) -> float:
        """How much of the run one memory figure is the median of."""
        return self.seconds / 10


FULL = Plan(180.0, 10.0, 8, 6.0, 200, 1.0)
QUICK = Plan(30.0, 10.0, 8, 6.0, 100, 0.5)


@dataclass
class Traffic:
    """What the clients sent and what they were told."""

    statuses: Counter[int] = field(default_factory=Counter)
    broken: int = 0
    accepted: dict[str, int] = field(default_factory=dict)
    canvas_latencies: list[float] = field(default_factory=list)
    late: int = 0
    unfinished: set[str] = field(default_factory=set)

    async def send(self, http: httpx.AsyncClient, method: str, url: str, **kwargs: object) -> dict:
        """The JSON body of a 2xx answer, else {}; the status or broken connection is counted."""
        try:
            response = await http.request(method, url, **kwargs)
        except httpx.HTTPError:
            self.broken += 1
            return {}
        self.statuses[response.status_code] += 1
        return response.json() if response.is_success else {}

    def accept(self, job: dict) -> None:
        self.accepted[job["id"]] = job["progress"]["total"]
        if job["status"] not in FINISHED:
            self.unfinished.add(job["id"])


def rss_mb(pid: int) -> float | None:
    """Resident memory of one process (all its threads), None once it has gone."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
    return int(kilobytes) / 1024


async def sample_memory(stack: Stack, every_s: float, samples: list[dict]) -> None:
    """Worker and gateway RSS every `every_s` until cancelled, seconds counted from the start."""
    started = time.monotonic()
    while True:
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                **{name: rss_mb(stack.processes[name].pid) for name in ("worker", "gateway")},
            }
        )
        await asyncio.sleep(every_s)


async def at(start: float, offset_s: float) -> None:
    await asyncio.sleep(max(0.0, start + offset_s - time.monotonic()))


async def canvas_load(
    http: httpx.AsyncClient, traffic: Traffic, plan: Plan, drawings: list[bytes], start: float
) -> None:
    """`canvas_requests` drawings, request i sent at start + i / rate by one of the clients."""
    tickets = itertools.count()

    async def client() -> None:
        while (ticket := next(tickets)) < plan.canvas_requests:
            await at(start, ticket / plan.canvas_per_second)
            sent = time.monotonic()
            drawing = {"file": ("drawing.png", drawings[ticket % len(drawings)], "image/png")}
            answer = await traffic.send(http, "POST", "/api/v1/predict", files=drawing)
            if "job" in answer:
                traffic.canvas_latencies.append(time.monotonic() - sent)
                traffic.accept(answer["job"])
            elif answer:
                traffic.late += 1
                traffic.accept(answer)

    await asyncio.gather(*(client() for _ in range(plan.canvas_clients)))


async def batch_load(
    http: httpx.AsyncClient, traffic: Traffic, plan: Plan, archive: bytes, start: float
) -> None:
    """One job of `batch_images` scans in one zip every `batch_every_s`."""
    for number in range(plan.batch_jobs):
        await at(start, number * plan.batch_every_s)
        files = {"files": ("scans.zip", archive, "application/zip")}
        if job := await traffic.send(http, "POST", "/api/v1/jobs", files=files):
            traffic.accept(job)


async def poll_load(http: httpx.AsyncClient, traffic: Traffic, until: asyncio.Event) -> None:
    """Every unfinished job polled each POLL_S, as clients do, until `until` is set and none is
    left; a job that never finishes is what the audit calls lost."""
    while not (until.is_set() and not traffic.unfinished):
        for job_id in list(traffic.unfinished):
            job = await traffic.send(http, "GET", f"/api/v1/jobs/{job_id}", params={"limit": 1})
            if job.get("status") in FINISHED:
                traffic.unfinished.discard(job_id)
        await asyncio.sleep(POLL_S)


async def drive(stack: Stack, plan: Plan, drawings: list[bytes], archive: bytes) -> dict:
    """The whole load with memory sampled throughout; the traffic and timings it produced."""
    traffic, samples = Traffic(), []
    limits = httpx.Limits(max_connections=plan.canvas_clients + 4)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, timeout=TIMEOUT_S, limits=limits
    ) as http:
        sampler = asyncio.create_task(sample_memory(stack, plan.sample_every_s, samples))
        start = time.monotonic()
        sent = asyncio.Event()
        polling = asyncio.create_task(poll_load(http, traffic, sent))
        await asyncio.gather(
            canvas_load(http, traffic, plan, drawings, start),
            batch_load(http, traffic, plan, archive, start),
        )
        sending_s = time.monotonic() - start
        sent.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(polling, DRAIN_S)
        sampler.cancel()
    return {
        "traffic": traffic,
        "samples": samples,
        "sending_s": sending_s,
        "drain_s": time.monotonic() - start - sending_s,
    }


def audit(settings: Settings, accepted: dict[str, int]) -> dict:
    """The database's word on every job: an accepted job is lost unless it succeeded with one
    succeeded result per item; a job no client was told about is unacknowledged."""
    with session_scope(settings.database_url) as session:
        jobs = {str(job_id): (status, total) for job_id, status, total in session.execute(
            select(Job.id, Job.status, Job.total))}  # fmt: skip
        results = {
            str(job_id): count
            for job_id, count in session.execute(
                select(Result.job_id, func.count())
                .where(Result.status == "succeeded")
                .group_by(Result.job_id)
            )
        }
    lost = [
        job_id
        for job_id, images in accepted.items()
        if jobs.get(job_id) != ("succeeded", images) or results.get(job_id) != images
    ]
    return {
        "accepted": len(accepted),
        "in_database": len(jobs),
        "succeeded": sum(status == "succeeded" for status, _ in jobs.values()),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "unacknowledged": len(set(jobs) - set(accepted)),
    }


def memory(samples: list[dict], name: str, plan: Plan) -> dict:
    """Median RSS just after the warm-up and over the last window, and the growth between."""
    series = [(s["t"], s[name]) for s in samples if s[name] is not None]
    end = series[-1][0]
    after_warmup = [mb for t, mb in series if plan.warmup_s <= t < plan.warmup_s + plan.window_s]
    last = [mb for t, mb in series if t >= end - plan.window_s]
    baseline, final = median(after_warmup), median(last)
    return {
        "start_mb": round(series[0][1], 1),
        "after_warmup_mb": round(baseline, 1),
        "end_mb": round(final, 1),
        "peak_mb": round(max(mb for _, mb in series), 1),
        "growth": round(final / baseline - 1, 4),
    }


def checks(requests: dict, jobs: dict, worker: dict) -> list[dict]:
    return [
        {"check": "accepted jobs lost", "goal": "== 0", "measured": jobs["lost"],
         "passed": jobs["lost"] == 0},
        {"check": "5xx answers", "goal": "== 0", "measured": requests["server_errors"],
         "passed": requests["server_errors"] == 0},
        {"check": "broken connections", "goal": "== 0", "measured": requests["broken"],
         "passed": requests["broken"] == 0},
        {"check": "worker RSS growth after warm-up (%)", "goal": f"<= {MAX_MEMORY_GROWTH:.0%}",
         "measured": round(100 * worker["growth"], 1),
         "passed": worker["growth"] <= MAX_MEMORY_GROWTH},
    ]  # fmt: skip


def summarize(stack: Stack, plan: Plan, run: dict) -> dict:
    traffic: Traffic = run["traffic"]
    requests = {
        "canvas_sent": plan.canvas_requests,
        "canvas_answered": len(traffic.canvas_latencies),
        "canvas_late": traffic.late,
        "canvas_latency": latency_summary(traffic.canvas_latencies),
        "batch_jobs_sent": plan.batch_jobs,
        "batch_images": plan.batch_jobs * plan.batch_images,
        "total": sum(traffic.statuses.values()) + traffic.broken,
        "statuses": {str(code): count for code, count in sorted(traffic.statuses.items())},
        "server_errors": sum(n for code, n in traffic.statuses.items() if code >= 500),
        "broken": traffic.broken,
    }
    jobs = audit(stack.settings, traffic.accepted)
    worker = memory(run["samples"], "worker", plan)
    results = {
        "plan": asdict(plan) | {"canvas_requests": plan.canvas_requests},
        "sending_s": round(run["sending_s"], 1),
        "drain_s": round(run["drain_s"], 1),
        "requests": requests,
        "jobs": jobs,
        "memory": {"worker": worker, "gateway": memory(run["samples"], "gateway", plan)},
        "checks": checks(requests, jobs, worker),
        "samples": run["samples"],
    }
    results["passed"] = all(row["passed"] for row in results["checks"])
    return results


def markdown(results: dict) -> str:
    plan, requests, jobs = results["plan"], results["requests"], results["jobs"]
    lines = [
        "# Soak",
        "",
        f"Measured {results['measured']} at {results['commit']}, {results['cores']} cores; load "
        f"average {results['load_average']['before']} before, {results['load_average']['after']}"
        f" after. {plan['seconds']:.0f} s of traffic: {plan['canvas_requests']:,} canvas drawings"
        f" at {plan['canvas_per_second']:g}/s from {plan['canvas_clients']} clients, and "
        f"{requests['batch_jobs_sent']} batch jobs of {plan['batch_images']} scans (one every "
        f"{plan['batch_every_s']:g} s), every unfinished job polled each {POLL_S:g} s. Sending "
        f"took {results['sending_s']} s, the last jobs finished {results['drain_s']} s later.",
        "",
        "| check | goal | measured | result |",
        "|---|---|---:|---|",
        *(
            f"| {row['check']} | {row['goal']} | {row['measured']:,} | "
            f"{'pass' if row['passed'] else '**fail**'} |"
            for row in results["checks"]
        ),
        "",
        "## Traffic",
        "",
        f"{requests['total']:,} requests; answers by status: "
        + ", ".join(f"{code}: {count:,}" for code, count in requests["statuses"].items())
        + f". Canvas: {requests['canvas_answered']:,} answered within the wait, "
        f"{requests['canvas_late']} late (202, then polled); p50 "
        f"{requests['canvas_latency']['p50_ms']} ms, p99 {requests['canvas_latency']['p99_ms']}"
        f" ms. Jobs: {jobs['accepted']:,} accepted, {jobs['succeeded']:,} succeeded in the "
        f"database, {jobs['lost']} lost, {jobs['unacknowledged']} unacknowledged.",
        "",
        "## Memory (RSS, MB)",
        "",
        "| process | start | after warm-up | end | peak | growth |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {m['start_mb']} | {m['after_warmup_mb']} | {m['end_mb']} | "
            f"{m['peak_mb']} | {m['growth']:+.1%} |"
            for name, m in results["memory"].items()
        ),
        "",
        f"Warm-up: the first {plan['seconds'] / 3:.0f} s; each figure after it is the median over"
        f" {plan['seconds'] / 10:.0f} s. Sampled every {plan['sample_every_s']:g} s; the samples "
        "are in the JSON.",
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    """The service's defaults on the shipped models, but no rate limit (every client here is one
    address) and no worker metrics port (another stack on this machine may hold it)."""
    plan = QUICK if args.quick else FULL
    models = shipped_models(args.models_dir)
    drawings = canvas_pngs(args.data_dir, CANVAS_IMAGES)
    archive = zipped(scan_pngs(args.data_dir, plan.batch_images))
    load_before = os.getloadavg()[0]
    started = datetime.now(UTC)
    overrides = {
        "models_dir": args.models_dir,
        "model_names": models,
        "default_model": models[0],
        "rate_limit": "",
        "worker_metrics_port": 0,
    }
    with running_stack(overrides) as stack:
        measured = asyncio.run(drive(stack, plan, drawings, archive))
        results = summarize(stack, plan, measured)
    return {
        "measured": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "commit": commit(),
        "cores": os.cpu_count(),
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        **results,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.seconds:.0f} s of traffic")
    defaults = f"{RESULTS.relative_to(ROOT)}, with --quick {QUICK_RESULTS.relative_to(ROOT)}"
    parser.add_argument("--out", type=Path, help=f"results JSON, .md beside it ({defaults})")
    parser.add_argument("--models-dir", type=Path, default=Settings().models_dir)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run, write the JSON and markdown, print the markdown; the results, for the smoke test."""
    args = parse_args(argv)
    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    results = run(args)
    save(out, results, markdown(results))
    return results


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
