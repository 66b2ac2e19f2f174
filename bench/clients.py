"""The load the benchmark puts on an endpoint: concurrent httpx loops, as real clients send.

Canvas clients each send one drawing at a time in a loop for a fixed time; the one-per-image
batch sends a list of files through a fixed number of concurrent requests; the batch job posts
one archive and polls until the job is finished.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import numpy as np

TIMEOUT_S = 60.0
UPLOAD_TIMEOUT_S = 300.0
POLL_S = 0.2
FINISHED = ("succeeded", "failed", "canceled")


def _client(connections: int, timeout: float = TIMEOUT_S) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=timeout)


def _one_file(data: bytes) -> dict:
    return {"file": ("drawing.png", data, "image/png")}


def latency_summary(latencies: list[float]) -> dict:
    """Percentiles in milliseconds; zeros when nothing completed, so the table stays readable."""
    if not latencies:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99]).tolist()
    return {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "p99_ms": round(p99, 1)}


async def canvas_clients(url: str, images: list[bytes], clients: int, seconds: float) -> dict:
    """`clients` loops posting one drawing each until `seconds` have passed.

    Only 200 counts as answered; a 202 (the result was not ready in time) is `late`, any other
    status or a transport error is an `error`. Requests started before the end are awaited.
    """
    latencies: list[float] = []
    late = errors = 0

    async def loop(offset: int, client: httpx.AsyncClient, end: float) -> None:
        nonlocal late, errors
        for data in itertools.islice(itertools.cycle(images), offset, None):
            if time.perf_counter() >= end:
                return
            sent = time.perf_counter()
            try:
                response = await client.post(url, files=_one_file(data))
            except httpx.HTTPError:
                errors += 1
                continue
            if response.status_code == 200:
                latencies.append(time.perf_counter() - sent)
            elif response.status_code == 202:
                late += 1
            else:
                errors += 1

    async with _client(clients) as client:
        started = time.perf_counter()
        end = started + seconds
        await asyncio.gather(*(loop(index * 7, client, end) for index in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        **latency_summary(latencies),
        "late": late,
        "errors": errors,
    }


async def one_request_each(url: str, images: list[bytes], concurrency: int) -> dict:
    """Every image as its own request, `concurrency` in flight at a time."""
    pending: Iterator[bytes] = iter(images)
    errors = 0

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for data in pending:
            try:
                response = await client.post(url, files=_one_file(data))
                errors += response.status_code != 200
            except httpx.HTTPError:
                errors += 1

    async with _client(concurrency) as client:
        started = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "images": len(images),
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "characters_per_second": round(len(images) / elapsed, 1),
        "errors": errors,
    }


def _server_seconds(job: dict, start: str, end: str) -> float:
    return (datetime.fromisoformat(job[end]) - datetime.fromisoformat(job[start])).total_seconds()


async def batch_job(gateway_url: str, archive: bytes, images: int, model: str) -> dict:
    """One job of `images` scans in one zip, timed from POST to the poll that sees it finished."""
    async with _client(1, UPLOAD_TIMEOUT_S) as client:
        started = time.perf_counter()
        response = await client.post(
            f"{gateway_url}/api/v1/jobs",
            files={"files": ("scans.zip", archive, "application/zip")},
            data={"model": model},
        )
        response.raise_for_status()
        accepted = time.perf_counter()
        location = f"{gateway_url}{response.headers['location']}"
        job = response.json()
        while job["status"] not in FINISHED:
            await asyncio.sleep(POLL_S)
            job = (await client.get(location, params={"limit": 1})).json()
        elapsed = time.perf_counter() - started
    return {
        "images": images,
        "status": job["status"],
        "seconds": round(elapsed, 3),
        "upload_seconds": round(accepted - started, 3),
        "queue_seconds": round(_server_seconds(job, "created_at", "started_at"), 3),
        "run_seconds": round(_server_seconds(job, "started_at", "finished_at"), 3),
        "characters_per_second": round(images / elapsed, 1),
        "failed": job["progress"]["failed"],
        "errors": images - job["progress"]["done"] + job["progress"]["failed"],
        "job_id": job["id"],
    }
