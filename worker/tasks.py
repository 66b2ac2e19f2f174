"""The Celery worker: `celery -A worker.tasks worker -Q cpu` (or `-Q gpu` on a GPU host)."""

from __future__ import annotations

import uuid
from typing import Any

from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import worker_process_init, worker_ready

from jobs.queue import RUN_JOB, make_celery
from jobs.settings import get_settings
from worker import inference, processing

app = make_celery(get_settings())


@worker_process_init.connect
def _load_models_after_fork(**_: Any) -> None:
    inference.preload()


@worker_ready.connect
def _load_models_without_fork(sender: Any, **_: Any) -> None:
    if not isinstance(sender.pool, PreforkPool):
        inference.preload()


@app.task(name=RUN_JOB)
def run_job(job_id: str) -> None:
    """Process whatever the job still lacks; redelivery after a crash just resumes."""
    processing.run_job(uuid.UUID(job_id))
