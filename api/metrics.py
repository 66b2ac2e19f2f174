"""The gateway's Prometheus metrics: requests by route and status, jobs by status, queue depth.

Request metrics are counted in middleware; job counts and queue depth are read from the
database and the broker when Prometheus scrapes, so every gateway reports the same truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from celery import Celery
from fastapi import APIRouter, Request, Response
from kombu.exceptions import ChannelError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobs import store
from jobs.db import session_scope
from jobs.queue import QUEUES
from jobs.schema import JobStatus
from jobs.settings import Settings

logger = logging.getLogger(__name__)

router = APIRouter(tags=["metrics"])


class GatewayMetrics:
    """One registry per app, so several apps in one process (as in tests) never collide."""

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hwr_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hwr_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(JobsAndQueues(settings, celery))


class RequestMetrics:
    """Counts and times every HTTP request under its route template (`/api/v1/jobs/{job_id}`)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            template = route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """`/api/v1/jobs/{job_id}` for `/api/v1/jobs/42...`: one label per route, not per job."""
    if "route" not in scope:
        return "unmatched"
    path: str = scope["path"]
    for name, value in scope.get("path_params", {}).items():
        head, found, tail = path.rpartition(str(value))
        path = f"{head}{{{name}}}{tail}" if found else path
    return path


class JobsAndQueues(Collector):
    """Jobs by status from the database and messages waiting per queue from the broker."""

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.settings = settings
        self.celery = celery

    def collect(self) -> Iterator[Metric]:
        try:
            with session_scope(self.settings.database_url) as session:
                counts = store.count_jobs_by_status(session)
        except Exception as error:
            logger.warning("metrics: job counts unavailable: %s", error)
        else:
            jobs = GaugeMetricFamily(
                "hwr_jobs", "Jobs in the database by status", labels=["status"]
            )
            for status in JobStatus:
                jobs.add_metric([status.value], counts.get(status, 0))
            yield jobs
        try:
            depths = self._queue_depths()
        except Exception as error:
            logger.warning("metrics: queue depth unavailable: %s", error)
        else:
            queued = GaugeMetricFamily(
                "hwr_queue_depth", "Task messages waiting in the broker", labels=["queue"]
            )
            for queue, depth in depths.items():
                queued.add_metric([queue], depth)
            yield queued

    def _queue_depths(self) -> dict[str, int]:
        with self.celery.connection_for_read() as connection:
            return {queue: _depth(connection.default_channel, queue) for queue in QUEUES}


def _depth(channel: Any, queue: str) -> int:
    """Messages waiting in a queue; a queue no worker has declared yet holds none."""
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
