"""The periodic sweep: the database, not the broker, decides what still has to run.

Redis may lose its queue on restart and a worker may die mid-job, so unfinished jobs idle past
`stuck_after_s` are enqueued again (tasks are idempotent), and expired jobs are deleted.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import Celery

from jobs import store
from jobs.db import session_scope
from jobs.queue import enqueue_job
from jobs.settings import Settings

logger = logging.getLogger(__name__)


def sweep_once(settings: Settings, celery: Celery) -> None:
    with session_scope(settings.database_url) as session:
        stuck = store.claim_stuck_jobs(session, timedelta(seconds=settings.stuck_after_s))
        expired = store.delete_expired(session, timedelta(seconds=settings.retention_s))
    for job_id in stuck:
        enqueue_job(celery, job_id, settings.job_queue)
    if stuck or expired:
        logger.info("sweep: re-enqueued %d stuck jobs, deleted %d expired", len(stuck), expired)


def start_sweeper(settings: Settings, celery: Celery) -> threading.Event:
    """Sweep every `sweep_interval_s` in a daemon thread until the returned event is set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.sweep_interval_s):
            try:
                sweep_once(settings, celery)
            except Exception:
                logger.exception("sweep failed; retrying next interval")

    threading.Thread(target=loop, name="sweeper", daemon=True).start()
    return stop
