"""Answering the canvas queue (`jobs.canvas_queue`): a thread per worker process takes every
drawing waiting on its queues' lists, runs them as one forward pass per model, stores them as
finished jobs in one transaction and only then answers them, so an answer always has its job.

Drawings come already batched: whatever arrived while the last batch ran is the next one. A lone
drawing never waits; drawings of clients drawing at once wait a few milliseconds for company, so
that one transaction serves more of them. What this thread cannot answer (an unavailable model
or database) it leaves unanswered, and each gateway then stores its drawing as a job.
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
from worker.batcher import CONCURRENCY_MEMORY_S
from worker.processing import read_and_predict

logger = logging.getLogger(__name__)

# How long one wait for a drawing blocks; short, so a lost Redis connection shows soon.
TAKE_BLOCK_S = 1.0
# How often a batch waiting for company looks for more drawings.
POLL_S = 0.001
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
    concurrent_until = 0.0
    while True:
        try:
            drawings = canvas_queue.take(redis, keys, settings.coalesce_max_batch, TAKE_BLOCK_S)
            if len(drawings) > 1 or time.monotonic() < concurrent_until:
                drawings += _company(redis, keys, settings.coalesce_max_batch - len(drawings))
            if len(drawings) > 1:
                concurrent_until = time.monotonic() + CONCURRENCY_MEMORY_S
            fresh = [drawing for drawing in drawings if not canvas_queue.is_stale(drawing)]
            if fresh:
                canvas_queue.give(redis, settings, _answer(fresh))
        except RedisError as error:
            logger.warning("canvas queue unavailable, retrying: %s", error)
            time.sleep(RETRY_S)
        except Exception:
            logger.exception("canvas drawings left unanswered; their gateways store them as jobs")
            time.sleep(RETRY_S)


def _company(redis: Redis, keys: list[str], most: int) -> list[Drawing]:
    """Drawings of clients drawing at once: more come while the last came under `coalesce_gap_ms`
    ago, for at most `coalesce_max_wait_ms`. Polled: Redis times a blocking wait only to its
    tick (100 ms by default)."""
    settings = get_settings()
    gap_s = settings.coalesce_gap_ms / 1000
    now = time.monotonic()
    deadline = now + settings.coalesce_max_wait_ms / 1000
    quiet_after = now + gap_s
    company: list[Drawing] = []
    while len(company) < most and time.monotonic() < min(deadline, quiet_after):
        time.sleep(POLL_S)
        more = canvas_queue.take_waiting(redis, keys, most - len(company))
        if more:
            company += more
            quiet_after = time.monotonic() + gap_s
    return company


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
