"""A worker's Prometheus metrics, served on its own port (`worker_metrics_port`).

Each worker process reports what only it sees: forward-pass sizes and times, items finished
and how long its models took to load. Job counts and queue depth come from the gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from jobs.store import Outcome

logger = logging.getLogger(__name__)

BATCH_SIZE = Histogram(
    "hwr_worker_batch_size",
    "Images per forward pass",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
INFERENCE_SECONDS = Histogram(
    "hwr_worker_inference_seconds",
    "Duration of one forward pass",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ITEMS = Counter("hwr_worker_items", "Items this worker finished", ["model", "status"])
MODEL_LOAD_SECONDS = Gauge(
    "hwr_worker_model_load_seconds", "How long loading each model took", ["model"]
)


def observe_forward_pass(model: str, size: int, seconds: float) -> None:
    BATCH_SIZE.labels(model).observe(size)
    INFERENCE_SECONDS.labels(model).observe(seconds)


def count_items(model: str, outcomes: Iterable[Outcome]) -> None:
    for outcome in outcomes:
        ITEMS.labels(model, outcome.status).inc()


def serve(port: int) -> None:
    """Expose the metrics over HTTP; a taken port only costs the metrics, never the worker."""
    if not port:
        return
    try:
        start_http_server(port)
    except OSError as error:
        logger.warning("worker metrics not served on port %d: %s", port, error)
