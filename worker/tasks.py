"""The Celery worker: `celery -A worker.tasks worker -Q cpu` (or `-Q gpu` on a GPU host)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import (
    setup_logging,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)

from jobs.logs import configure_logging, job_context
from jobs.queue import RUN_JOB, make_celery
from jobs.settings import get_settings
from worker import canvas, inference, metrics, processing

logger = logging.getLogger(__name__)

app = make_celery(get_settings())


@setup_logging.connect
def _log_as_the_gateway_does(**_: Any) -> None:
    configure_logging(get_settings())


@worker_process_init.connect
def _start_after_fork(**_: Any) -> None:
    _start_process()


@worker_ready.connect
def _start_without_fork(sender: Any, **_: Any) -> None:
    if not isinstance(sender.pool, PreforkPool):
        _start_process()


@worker_shutting_down.connect
@worker_process_shutdown.connect
def _stop_answering(**_: Any) -> None:
    canvas.stop()


def _start_process() -> None:
    """Load the models, serve metrics and answer the canvas queue of the queues consumed."""
    inference.preload()
    metrics.serve(get_settings().worker_metrics_port)
    canvas.start(app.amqp.queues.consume_from)


@app.task(name=RUN_JOB)
def run_job(job_id: str, first: int = 0, stop: int | None = None) -> None:
    """Process whatever the job still lacks among items `first` to `stop` (all by default);
    redelivery after a crash just resumes."""
    started = time.perf_counter()
    with job_context(job_id):
        logger.info("job started", extra={"first": first, "stop": stop})
        processing.run_job(uuid.UUID(job_id), first, stop)
        logger.info("job done", extra={"seconds": round(time.perf_counter() - started, 3)})
