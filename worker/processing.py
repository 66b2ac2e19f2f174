"""Running one job: preprocess and predict its pending items a batch at a time, save in bulk.

Safe to run twice or to resume: it only takes items without a result, and stops as soon as the
job is no longer running (canceled, or finished by another delivery).
"""

from __future__ import annotations

import base64
import logging
import uuid

import numpy as np
from sqlalchemy.orm import Session

from jobs import store
from jobs.db import session_scope
from jobs.schema import Item, Job, JobStatus
from jobs.settings import get_settings
from ml.artifact import ModelArtifactError
from ml.predictor import Prediction, Predictor
from ml.preprocess import PreprocessError, to_display_png, to_model_input
from worker import inference

logger = logging.getLogger(__name__)


def run_job(job_id: uuid.UUID) -> None:
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        job = store.start_job(session, job_id)
        if job is not None and job.for_canvas:
            _run_canvas(session, job)
            return
        items = store.pending_items(session, job_id, settings.inference_batch_size) if job else []
    if job is None:
        return
    model = _model_of(job)
    if model is None:
        with session_scope(settings.database_url) as session:
            _fail_unavailable(session, job)
        return
    while True:
        outcomes = _predict(items, model, job.model, job.for_canvas)
        after = items[-1].index if items else -1
        with session_scope(settings.database_url) as session:
            store.save_outcomes(session, job_id, outcomes)
            items = store.pending_items(session, job_id, settings.inference_batch_size, after)
            if not items:
                store.finish_job(session, job_id, JobStatus.succeeded)
                return


def _run_canvas(session: Session, job: Job) -> None:
    """Claim, predict, save and finish in the caller's transaction: one commit per canvas image."""
    model = _model_of(job)
    if model is None:
        _fail_unavailable(session, job)
        return
    items = store.pending_items(session, job.id, limit=job.total)
    store.save_outcomes(session, job.id, _predict(items, model, job.model, for_canvas=True))
    store.finish_job(session, job.id, JobStatus.succeeded)


def _model_of(job: Job) -> Predictor | None:
    """The job's model, or None (logged) when this worker cannot load it."""
    try:
        return inference.predictor(job.model)
    except ModelArtifactError as error:
        logger.error("job %s: %s", job.id, error)
        return None


def _fail_unavailable(session: Session, job: Job) -> None:
    """Every item still pending fails with one clear reason, so the client is not left waiting."""
    message = f"Model {job.model!r} is not available on this worker."
    items = store.pending_items(session, job.id, limit=job.total)
    store.save_outcomes(session, job.id, [store.Outcome.failure(i.index, message) for i in items])
    store.finish_job(session, job.id, JobStatus.failed)


def _model_input(item: Item, model: Predictor) -> np.ndarray:
    return to_model_input(item.data or b"", model.spec.input, get_settings().max_image_pixels)


def _predict(
    items: list[Item], model: Predictor, model_name: str, for_canvas: bool
) -> list[store.Outcome]:
    """Outcomes for a batch: unreadable images fail alone, the rest share one forward pass."""
    outcomes: list[store.Outcome] = []
    readable: list[tuple[int, np.ndarray]] = []
    for item in items:
        try:
            readable.append((item.index, _model_input(item, model)))
        except PreprocessError as error:
            outcomes.append(store.Outcome.failure(item.index, error.message))
        except Exception:
            logger.exception("item %d of job %s could not be read", item.index, item.job_id)
            outcomes.append(store.Outcome.failure(item.index, "The image could not be read."))
    if not readable:
        return outcomes
    inputs = np.stack([model_input for _, model_input in readable])
    if for_canvas:
        predictions = [inference.coalescer(model_name).predict(x) for x in inputs]
    else:
        predictions = model.predict(inputs)
        inference.record_batch(len(inputs), coalesced=False)
    for (index, model_input), prediction in zip(readable, predictions, strict=True):
        display = _display_png(model_input, model) if for_canvas else None
        outcomes.append(_success(index, prediction, display))
    return outcomes


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
