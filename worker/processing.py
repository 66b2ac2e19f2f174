"""Running one job, or one task's range of its items: preprocess and predict the pending items a
batch at a time, save in bulk; whichever task saves the last result finishes the job.

Safe to run twice or to resume: it only takes items without a result, and stops as soon as the
job is no longer running (canceled, or finished by another delivery). Each transaction is redone
whole while the database is unavailable (a restart), up to `db_retry_s`; past that the task fails
and the sweep enqueues the job again. Each read of an item is counted, and committed, just
before it starts, so a file that kills the worker is retried alone and failed after
`max_item_attempts`, instead of taking the worker down on every redelivery.
"""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from sqlalchemy.orm import Session

from jobs import store
from jobs.db import retrying
from jobs.schema import Item, Job, JobStatus
from jobs.settings import get_settings
from ml.artifact import ModelArtifactError
from ml.image_errors import PreprocessError
from ml.predictor import Prediction, Predictor
from ml.preprocess import ModelInput, read_model_input, to_display_png
from worker import inference, metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

# One batch of a batch job computes at a time in a worker process: its task threads would only
# contend for the GIL (README, "One job over several workers"); saving and loading overlap.
_one_batch_at_a_time = threading.Lock()
UNAVAILABLE = "Model {!r} is not available on this worker."
GIVEN_UP = "A worker stopped while reading this image {} times; it was not read again."


def run_job(job_id: uuid.UUID, first: int = 0, stop: int | None = None) -> None:
    """Items `first` to `stop` (all by default) that still lack a result. Items are counted in
    the metrics once their transaction committed, never on a retry."""
    started = _transaction(_start, job_id, first - 1, stop)
    if started is None:
        return
    job, items = started
    if not items:
        return
    model = _model_of(job)
    if model is None:
        metrics.count_items(job.model, _transaction(_fail_unavailable, job))
        return
    if job.for_canvas:
        outcomes, _ = _predict(items, model, job.model, for_canvas=True)
        _transaction(_save_canvas, job_id, outcomes)
        metrics.count_items(job.model, outcomes)
        return
    while items:
        with _one_batch_at_a_time:
            reading = _transaction(_start_reading, job_id, items)
            outcomes, forward_pass = _predict(reading, model, job.model, for_canvas=False)
        after = items[-1].index
        items = _transaction(_save, job_id, outcomes, forward_pass, after, stop)
        metrics.count_items(job.model, outcomes)


def _transaction(work: Callable[..., T], *args: object) -> T:
    """`work(session, *args)` in a transaction that outlasts a database restart."""
    settings = get_settings()
    return retrying(
        settings.database_url, lambda session: work(session, *args), settings.db_retry_s
    )


def _start(
    session: Session, job_id: uuid.UUID, after: int, stop: int | None
) -> tuple[Job, list[Item]] | None:
    """Mark the job running and take its first batch; a canvas job's image is read at once, so
    its read is counted here."""
    job = store.start_job(session, job_id)
    if job is None:
        return None
    if job.for_canvas:
        return job, _start_reading(session, job_id, _take(session, job_id, job.total, after, stop))
    return job, _take(session, job_id, get_settings().inference_batch_size, after, stop)


def _save(
    session: Session,
    job_id: uuid.UUID,
    outcomes: list[store.Outcome],
    forward_pass: int,
    after: int,
    stop: int | None,
) -> list[Item]:
    """Save one batch and take the next; the job is finished when no task has any left."""
    store.save_outcomes(session, job_id, outcomes)
    if forward_pass:
        store.record_batch(session, forward_pass, coalesced=False)
    return _take(session, job_id, get_settings().inference_batch_size, after, stop)


def _take(
    session: Session, job_id: uuid.UUID, limit: int, after: int, stop: int | None
) -> list[Item]:
    """The next batch, within `inference_batch_bytes` (it bounds what a worker holds); with none
    left, the job is finished once every task's results are in."""
    max_bytes = get_settings().inference_batch_bytes
    items = store.next_items(session, job_id, limit, max_bytes, after, stop)
    if not items:
        store.finish_if_complete(session, job_id)
    return items


def _start_reading(session: Session, job_id: uuid.UUID, items: list[Item]) -> list[Item]:
    """Those of `items` still to read (none has a result yet, the job still runs), with this
    read counted in their `attempts`."""
    attempts = store.start_reading(session, job_id, [item.index for item in items])
    reading = [item for item in items if item.index in attempts]
    for item in reading:
        item.attempts = attempts[item.index]
    return reading


def _save_canvas(session: Session, job_id: uuid.UUID, outcomes: list[store.Outcome]) -> None:
    """A canvas job has one image: its outcome finishes it, with no count of the others."""
    store.save_outcomes(session, job_id, outcomes)
    store.finish_job(session, job_id, JobStatus.succeeded)


def _model_of(job: Job) -> Predictor | None:
    """The job's model, or None (logged) when this worker cannot load it."""
    try:
        return inference.predictor(job.model)
    except ModelArtifactError as error:
        logger.error("job %s: %s", job.id, error)
        return None


def _fail_unavailable(session: Session, job: Job) -> list[store.Outcome]:
    """Every item still pending fails with one clear reason, so the client is not left waiting."""
    message = UNAVAILABLE.format(job.model)
    items = store.pending_items(session, job.id, limit=job.total)
    failures = [store.Outcome.failure(item.index, message) for item in items]
    store.save_outcomes(session, job.id, failures)
    store.finish_job(session, job.id, JobStatus.failed)
    return failures


def _predict(
    items: list[Item], model: Predictor, model_name: str, for_canvas: bool
) -> tuple[list[store.Outcome], int]:
    """Outcomes for a batch, and the size of its forward pass (0 for canvas images, which the
    coalescer batches and records); an item read too often already fails unread."""
    outcomes: list[store.Outcome] = []
    images: list[tuple[int, bytes]] = []
    max_attempts = get_settings().max_item_attempts
    for item in items:
        if item.attempts > max_attempts:
            logger.error(
                "item %d of job %s given up after %d reads", item.index, item.job_id, max_attempts
            )
            outcomes.append(store.Outcome.failure(item.index, GIVEN_UP.format(max_attempts)))
        else:
            images.append((item.index, item.data or b""))
    if for_canvas:
        coalescer = inference.coalescer(model_name)
        read, _ = read_and_predict(images, model, lambda xs: [coalescer.predict(x) for x in xs])
        return outcomes + read, 0
    read, forward_pass = read_and_predict(images, model, model.predict_inputs, display=False)
    return outcomes + read, forward_pass


def read_and_predict(
    images: list[tuple[int, bytes]],
    model: Predictor,
    predict: Callable[[list[ModelInput]], list[Prediction]],
    display: bool = True,
) -> tuple[list[store.Outcome], int]:
    """Outcomes of (index, file) pairs, and how many images `predict` got: unreadable files fail
    alone, the rest share one call. `display` adds the model input as a PNG, as drawings show it."""
    outcomes: list[store.Outcome] = []
    readable: list[tuple[int, ModelInput]] = []
    limits = get_settings().file_limits()
    for index, data in images:
        try:
            readable.append((index, read_model_input(data, model.spec.input, limits)))
        except PreprocessError as error:
            outcomes.append(store.Outcome.failure(index, error.message))
        except Exception:
            logger.exception("image %d could not be read", index)
            outcomes.append(store.Outcome.failure(index, "The image could not be read."))
    if not readable:
        return outcomes, 0
    predictions = predict([model_input for _, model_input in readable])
    for (index, model_input), prediction in zip(readable, predictions, strict=True):
        shown = _display_png(model_input.pixels, model) if display else None
        outcomes.append(_success(index, prediction, shown))
    return outcomes, len(readable)


def _display_png(model_input: np.ndarray, model: Predictor) -> str:
    png = to_display_png(model_input, model.spec.input)
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _success(index: int, prediction: Prediction, model_input: str | None) -> store.Outcome:
    best_label, best_probability = prediction[0]
    return store.Outcome(
        index=index,
        status="succeeded",
        prediction=best_label,
        confidence=best_probability,
        top5=[{"label": label, "probability": p} for label, p in prediction],
        model_input=model_input,
    )
