"""Answering the canvas queue (`jobs.canvas_queue`): a thread per worker process takes the
drawings waiting on its queues' lists, runs them as one forward pass per model, stores them as
finished jobs in one transaction and only then answers them, so an answer always has its job.

Drawings come already batched: whatever arrived while the last batch ran is the next one. A lone
drawing never waits; drawings of clients drawing at once wait a few milliseconds for company, so
that one transaction serves more of them. A batch holds at most `coalesce_max_batch` drawings and
about `inference_batch_bytes` of files. What this thread cannot answer (Redis or the database
unavailable) it leaves unanswered, and each gateway then stores its drawing as a job.
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
from jobs.schema import JobStatus, utcnow
from jobs.settings import get_settings
from ml.artifact import ModelArtifactError
from worker import inference, metrics
from worker.batcher import CONCURRENCY_MEMORY_S
from worker.processing import UNAVAILABLE, read_and_predict

logger = logging.getLogger(__name__)

# How long one wait for a drawing blocks, and so how soon the thread sees it should stop.
TAKE_BLOCK_S = 1.0
# How often a batch waiting for company looks for more drawings.
POLL_S = 0.001
# Pause after a failure (Redis or the database unavailable) before taking drawings again.
RETRY_S = 1.0
# How long a worker shutting down waits for the batch in hand to be answered.
FINISH_S = 10.0

_stopping = threading.Event()
_threads: list[threading.Thread] = []


def start(queues: Iterable[str]) -> None:
    """Answer the drawings of `queues` (in that order of priority) from a thread of its own."""
    settings = get_settings()
    if not canvas_queue.uses_redis(settings):
        return
    keys = [canvas_queue.drawings_key(settings, queue) for queue in queues]
    thread = threading.Thread(target=_serve, args=(keys,), name="canvas-queue", daemon=True)
    thread.start()
    _threads.append(thread)


def stop() -> None:
    """Take no more drawings, and let the batch in hand be answered (a warm shutdown)."""
    _stopping.set()
    for thread in _threads:
        thread.join(FINISH_S)


def _serve(keys: list[str]) -> None:
    """Take, answer, repeat; a failure costs only the batch in hand, which its gateways store."""
    settings = get_settings()
    redis = canvas_queue.connect(settings, TAKE_BLOCK_S)
    concurrent_until = 0.0
    while not _stopping.is_set():
        try:
            most, most_bytes = settings.coalesce_max_batch, settings.inference_batch_bytes
            drawings = canvas_queue.take(redis, keys, most, most_bytes, TAKE_BLOCK_S)
            if len(drawings) > 1 or time.monotonic() < concurrent_until:
                drawings += _company(redis, keys, drawings)
            if len(drawings) > 1:
                concurrent_until = time.monotonic() + CONCURRENCY_MEMORY_S
            fresh = list({d.job_id: d for d in drawings if not d.is_stale()}.values())
            if fresh:
                answers = _answer(fresh)
                replies = [(d.reply_to, answers[d.job_id]) for d in fresh if d.job_id in answers]
                canvas_queue.give(redis, settings, replies)
        except RedisError as error:
            logger.warning("canvas queue unavailable, retrying: %s", error)
            time.sleep(RETRY_S)
        except Exception:
            logger.exception("canvas drawings left unanswered; their gateways store them as jobs")
            time.sleep(RETRY_S)


def _company(redis: Redis, keys: list[str], batch: list[Drawing]) -> list[Drawing]:
    """Drawings of clients drawing at once: more come while the last came under `coalesce_gap_ms`
    ago, for at most `coalesce_max_wait_ms`, within the batch's limits. Polled: Redis times a
    blocking wait only to its tick (100 ms by default)."""
    settings = get_settings()
    gap_s = settings.coalesce_gap_ms / 1000
    now = time.monotonic()
    deadline = now + settings.coalesce_max_wait_ms / 1000
    quiet_after = now + gap_s
    most = settings.coalesce_max_batch - len(batch)
    left_bytes = settings.inference_batch_bytes - sum(len(d.data) for d in batch)
    company: list[Drawing] = []
    while len(company) < most and time.monotonic() < min(deadline, quiet_after):
        time.sleep(POLL_S)
        more = canvas_queue.take_waiting(redis, keys, most - len(company), left_bytes)
        if more:
            company += more
            left_bytes -= sum(len(d.data) for d in more)
            quiet_after = time.monotonic() + gap_s
    return company


def _answer(drawings: list[Drawing]) -> dict[uuid.UUID, Answer]:
    """Answers to the drawings, by job id, once they are stored; none for those stored already.
    A drawing for a model this worker cannot serve is answered (and stored) as a failed job."""
    answered: list[store.AnsweredDrawing] = []
    batch_sizes: list[int] = []
    for model_name, group in groupby(sorted(drawings, key=_model), key=_model):
        same_model = list(group)
        started = utcnow()
        try:
            model = inference.predictor(_served(model_name))
        except ModelArtifactError as error:
            logger.error("canvas drawings for %s failed: %s", model_name, error)
            failure = store.Outcome.failure(0, UNAVAILABLE.format(model_name))
            answered += [_answered(d, JobStatus.failed, started, failure) for d in same_model]
            continue
        images = list(enumerate(drawing.data for drawing in same_model))
        outcomes, batch_size = read_and_predict(images, model, model.predict_inputs)
        batch_sizes.append(batch_size)
        for outcome in outcomes:
            drawing = same_model[outcome.index]
            answered.append(_answered(drawing, JobStatus.succeeded, started, outcome))
    with session_scope(get_settings().database_url) as session:
        stored = store.save_answered_drawings(session, answered)
        for size in batch_sizes:
            if size:
                store.record_batch(session, size, coalesced=True)
    answers = {}
    for done in answered:
        if done.job_id in stored:
            metrics.count_items(done.model, [done.outcome])
            answers[done.job_id] = Answer(
                done.job_id, done.job_status, done.started_at, done.finished_at, done.outcome
            )
    return answers


def _served(model_name: str) -> str:
    """The name, if this service serves such a model; never a path to load anything else from."""
    if model_name not in get_settings().model_names:
        raise ModelArtifactError(f"{model_name!r} is not one of HWR_MODEL_NAMES")
    return model_name


def _model(drawing: Drawing) -> str:
    return drawing.model


def _answered(
    drawing: Drawing, job_status: str, started: datetime, outcome: store.Outcome
) -> store.AnsweredDrawing:
    """The drawing as it is stored: a finished one-item job; `outcome` becomes item 0's."""
    return store.AnsweredDrawing(
        job_id=drawing.job_id,
        job_status=job_status,
        model=drawing.model,
        owner=drawing.owner,
        filename=drawing.filename,
        request_hash=drawing.request_hash,
        created_at=drawing.created_at,
        started_at=started,
        finished_at=utcnow(),
        outcome=dataclasses.replace(outcome, index=0),
    )
