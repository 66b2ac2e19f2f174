"""Accepting a job: validate the upload, store it with its bytes, then enqueue it.

The job is committed before it is enqueued, so a worker always finds it; if the broker is down
the job stays queued and the sweep enqueues it later.
"""

from __future__ import annotations

import logging
import uuid

from celery import Celery
from fastapi import HTTPException, UploadFile
from sqlalchemy.exc import IntegrityError

from api.uploads import Upload, read_upload
from jobs import store
from jobs.db import session_scope
from jobs.queue import enqueue_job
from jobs.settings import Settings

logger = logging.getLogger(__name__)


def submit_job(
    settings: Settings,
    celery: Celery,
    files: list[UploadFile],
    model: str | None,
    for_canvas: bool = False,
    idempotency_key: str | None = None,
    owner: str = "",
) -> uuid.UUID:
    """The id of the accepted job (an earlier one when the idempotency key was seen)."""
    # An empty Idempotency-Key header names no key; stored, a second one would clash with it.
    idempotency_key = idempotency_key or None
    model, upload = accept_upload(settings, files, model, for_canvas)
    if idempotency_key and (
        earlier := _earlier_job(settings, owner, idempotency_key, upload.digest)
    ):
        return earlier
    return store_job(settings, celery, model, upload, for_canvas, idempotency_key, owner)


def accept_upload(
    settings: Settings, files: list[UploadFile], model: str | None, for_canvas: bool = False
) -> tuple[str, Upload]:
    """The model to use and the checked upload; 4xx for what cannot become a job."""
    model = model or settings.default_model
    if model not in settings.model_names:
        names = ", ".join(settings.model_names)
        raise HTTPException(422, f"Unknown model {model!r}: choose one of {names}.")
    upload = read_upload(files, model, settings)
    if for_canvas and len(upload.items) != 1:
        raise HTTPException(422, "Send exactly one image to /predict; use /jobs for more.")
    if for_canvas and (refused := upload.items[0].error):
        # One image and nothing else to accept: a job that could only fail would be noise.
        raise HTTPException(422, refused)
    return model, upload


def store_job(
    settings: Settings,
    celery: Celery,
    model: str,
    upload: Upload,
    for_canvas: bool = False,
    idempotency_key: str | None = None,
    owner: str = "",
    job_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Store the job (under `job_id` when given: IntegrityError if it is taken), then enqueue it."""
    try:
        with session_scope(settings.database_url) as session:
            job = store.create_job(
                session,
                model,
                upload.items,
                for_canvas,
                idempotency_key,
                upload.digest,
                owner,
                job_id,
            )
    except IntegrityError:
        if idempotency_key and (
            earlier := _earlier_job(settings, owner, idempotency_key, upload.digest)
        ):
            return earlier
        raise
    try:
        enqueue_job(celery, job.id, settings.job_queue, job.total, settings.job_task_items)
    except Exception:
        logger.exception("job %s stored but not enqueued; the sweep will enqueue it", job.id)
    return job.id


def _earlier_job(settings: Settings, owner: str, key: str, digest: str) -> uuid.UUID | None:
    with session_scope(settings.database_url) as session:
        job = store.find_by_idempotency_key(session, key, owner)
    if job is None:
        return None
    if job.request_hash != digest:
        raise HTTPException(409, "This Idempotency-Key was already used for a different request.")
    return job.id
