"""Answering the canvas queue (`jobs.canvas_queue`): a thread per worker process takes every
drawing waiting on its queues' lists, runs them as one forward pass per model, stores them as
finished jobs in one transaction and only then answers them, so an answer always has its job.

Drawings come already batched: whatever arrived while the last batch ran is the next one, so
nothing waits to fill a batch. What this thread cannot answer (an unavailable model or
database) it leaves unanswered, and each gateway then stores its drawing as a job.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from itertools import groupby

from redis import Redis
from redis.exceptions import RedisError

from jobs import canvas_queue, store
from jobs.canvas_queue import Answer, Drawing
from jobs.db import session_scope
from jobs.schema import utcnow
from jobs.settings import get_settings
from ml.artifact import ModelArtifactError
from worker import inference, metrics
from worker.processing import read_and_predict

logger = logging.getLogger(__name__)

# How long one wait for a drawing blocks; short, so a lost Redis connection shows soon.
TAKE_BLOCK_S = 1.0
# Pause after a failure (Redis or the database unavailable) before taking drawings again.
RETRY_S = 1.0


def start(queues: Iterable[str]) -> None:
    """Answer the drawings of `queues` (in that order of priority) from a daemon thread."""
    settings = get_settings()
    if not canvas_queue.enabled(settings):
        return
    keys = [canvas_queue.drawings_key(settings, queue) for queue in queues]
    threading.Thread(target=_serve, args=(keys,), name="canvas-queue", daemon=True).start()


def _serve(keys: list[str]) -> None:
    settings = get_settings()
    redis = Redis.from_url(settings.broker_url)
    while True:
        try:
            drawings = canvas_queue.take(redis, keys, settings.coalesce_max_batch, TAKE_BLOCK_S)
            fresh = [drawing for drawing in drawings if not canvas_queue.is_stale(drawing)]
            if fresh:
                canvas_queue.give(redis, settings, _answer(fresh))
        except RedisError as error:
            logger.warning("canvas queue unavailable, retrying: %s", error)
            time.sleep(RETRY_S)
        except Exception:
            logger.exception("canvas drawings left unanswered; their gateways store them as jobs")
            time.sleep(RETRY_S)


def _answer(drawings: list[Drawing]) -> dict[uuid.UUID, Answer]:
    """Answers to the drawings, by job id, once they are stored; none for those stored already."""
    answered: list[store.AnsweredDrawing] = []
    batch_sizes: list[int] = []
    for model_name, group in groupby(sorted(drawings, key=_model), key=_model):
        try:
            model = inference.predictor(model_name)
        except ModelArtifactError as error:
            logger.error("canvas drawings for %s left to their jobs: %s", model_name, error)
            continue
        same_model = list(group)
        started = utcnow()
        images = list(enumerate(drawing.data for drawing in same_model))
        outcomes, batch_size = read_and_predict(images, model, model.predict_inputs)
        finished = utcnow()
        batch_sizes.append(batch_size)
        for outcome in outcomes:
            drawing = same_model[outcome.index]
            answered.append(_answered(drawing, started, finished, outcome))
    with session_scope(get_settings().database_url) as session:
        stored = store.save_answered_drawings(session, answered)
        for size in batch_sizes:
            if size:
                store.record_batch(session, size, coalesced=True)
    answers = {}
    for done in answered:
        if done.job_id in stored:
            metrics.count_items(done.model, [done.outcome])
            answers[done.job_id] = Answer(done.started_at, done.finished_at, done.outcome)
    return answers


def _model(drawing: Drawing) -> str:
    return drawing.model


def _answered(
    drawing: Drawing, started: datetime, finished: datetime, outcome: store.Outcome
) -> store.AnsweredDrawing:
    return store.AnsweredDrawing(
        job_id=drawing.job_id,
        model=drawing.model,
        owner=drawing.owner,
        filename=drawing.filename,
        request_hash=drawing.request_hash,
        created_at=drawing.created_at,
        started_at=started,
        finished_at=finished,
        outcome=dataclasses.replace(outcome, index=0),
    )
