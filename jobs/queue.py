"""The Celery app both sides share: the gateway sends `run_job`, workers run it.

A large job goes out as several tasks, each for a range of its items; the sweep sends one task
for the whole job, which takes whatever is still missing.

Tasks are acknowledged only after they ran and are re-queued when a worker dies mid-task; the
database, not the broker, remembers what is left to do.
"""

from __future__ import annotations

import uuid
from typing import Any, get_args

from celery import Celery
from kombu import Queue

from jobs.settings import JobQueue, Settings

RUN_JOB = "worker.tasks.run_job"
QUEUES = get_args(JobQueue)
FILESYSTEM_POLL_S = 0.02
FILESYSTEM_TRANSPORT = "jobs.filesystem_broker:Transport"


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url.startswith("redis"):
        return {"global_keyprefix": settings.broker_key_prefix}
    folder = settings.state_dir / "broker"
    (folder / "control").mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
        "polling_interval": FILESYSTEM_POLL_S,
    }


def make_celery(settings: Settings) -> Celery:
    app = Celery("hwr", broker=settings.broker_url, set_as_current=False)
    if settings.broker_url.startswith("filesystem"):
        app.conf.broker_transport = FILESYSTEM_TRANSPORT
    app.conf.update(
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue=QUEUES[0],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
    )
    return app


def enqueue_job(
    app: Celery, job_id: uuid.UUID, queue: str, items: int = 0, task_items: int = 0
) -> None:
    """One task for the whole job, or, for a job of more than `task_items` items, one task per
    `task_items` of them, which several workers can run at once."""
    if not task_items or items <= task_items:
        app.send_task(RUN_JOB, args=[str(job_id)], queue=queue)
        return
    for first in range(0, items, task_items):
        app.send_task(RUN_JOB, args=[str(job_id), first, first + task_items], queue=queue)
