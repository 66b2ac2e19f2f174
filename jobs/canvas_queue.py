"""The canvas queue: drawings that a worker answers first and stores right after, on Redis.

A drawing sent as a job costs two commits at the gateway, a Celery task, two transactions at the
worker and a read-back: about 25 ms of server CPU, where preprocessing and the forward pass take
about 2 ms. Where the broker is Redis, the gateway instead pushes the drawing onto a list of its
job queue and waits on a key of its own; a worker takes everything on the list at once, runs it
as one forward pass per model, stores the drawings as finished jobs in one transaction, and only
then answers each on its key.

The job id is the gateway's, so the database settles the one race. A gateway that waited in vain
(no worker, a worker that died holding the drawing) stores the drawing as a queued job under that
id and sends it as a task; a worker that then finds the id taken does not answer. Either way the
drawing is stored once and nothing accepted is lost.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from jobs.settings import Settings
from jobs.store import Outcome

REDIS_SCHEMES = ("redis", "rediss")
# An answer nobody took (its gateway stopped waiting) is dropped after this.
ANSWER_KEPT_S = 60


@dataclass(frozen=True)
class Drawing:
    """One /predict request as the worker needs it; `answer_by` (epoch seconds) is when its
    gateway stops waiting, past which answering it is wasted work."""

    job_id: uuid.UUID
    model: str
    owner: str
    filename: str
    data: bytes
    request_hash: str
    created_at: datetime
    answer_by: float


@dataclass(frozen=True)
class Answer:
    started_at: datetime
    finished_at: datetime
    outcome: Outcome


def enabled(settings: Settings) -> bool:
    """The canvas queue needs Redis as the broker, and a gateway willing to wait."""
    scheme = settings.broker_url.split("://", 1)[0]
    return scheme in REDIS_SCHEMES and settings.predict_wait_s > 0


def drawings_key(settings: Settings, queue: str) -> str:
    return f"{settings.broker_key_prefix}canvas:{queue}"


def _answer_key(settings: Settings, job_id: uuid.UUID) -> str:
    return f"{settings.broker_key_prefix}canvas:answer:{job_id}"


async def ask(redis: AsyncRedis, settings: Settings, drawing: Drawing) -> Answer | None:
    """Queue the drawing and wait up to `predict_wait_s` for its answer (None: none came)."""
    key = drawings_key(settings, settings.job_queue)
    async with redis.pipeline(transaction=False) as pipeline:
        pipeline.rpush(key, _encode_drawing(drawing))
        # A list no worker takes from for this long holds only drawings nobody waits for.
        pipeline.expire(key, math.ceil(2 * settings.predict_wait_s))
        await pipeline.execute()
    answered = await redis.blpop([_answer_key(settings, drawing.job_id)], settings.predict_wait_s)
    return None if answered is None else _decode_answer(answered[1])


def take(redis: Redis, keys: list[str], most: int, block_s: float) -> list[Drawing]:
    """Everything queued on the first of `keys` that holds any, up to `most`; waits up to
    `block_s` for a first drawing, never for more."""
    popped = redis.blpop(keys, block_s)
    if popped is None:
        return []
    key, first = popped
    rest = redis.lpop(key, most - 1) if most > 1 else None
    return [_decode_drawing(data) for data in [first, *(rest or [])]]


def take_waiting(redis: Redis, keys: list[str], most: int) -> list[Drawing]:
    """What is queued now on `keys`, in their order, up to `most`; never waits."""
    taken: list[bytes] = []
    for key in keys:
        if len(taken) < most:
            taken += redis.lpop(key, most - len(taken)) or []
    return [_decode_drawing(data) for data in taken]


def give(redis: Redis, settings: Settings, answers: dict[uuid.UUID, Answer]) -> None:
    """Hand each waiting gateway its answer."""
    with redis.pipeline(transaction=False) as pipeline:
        for job_id, answer in answers.items():
            key = _answer_key(settings, job_id)
            pipeline.rpush(key, _encode_answer(answer))
            pipeline.expire(key, ANSWER_KEPT_S)
        pipeline.execute()


def is_stale(drawing: Drawing) -> bool:
    return drawing.answer_by <= time.time()


def _encode_drawing(drawing: Drawing) -> bytes:
    fields = vars(drawing) | {
        "job_id": str(drawing.job_id),
        "data": base64.b64encode(drawing.data).decode(),
        "created_at": drawing.created_at.isoformat(),
    }
    return json.dumps(fields).encode()


def _decode_drawing(message: bytes) -> Drawing:
    fields: dict[str, Any] = json.loads(message)
    return Drawing(
        **fields
        | {
            "job_id": uuid.UUID(fields["job_id"]),
            "data": base64.b64decode(fields["data"]),
            "created_at": datetime.fromisoformat(fields["created_at"]),
        }
    )


def _encode_answer(answer: Answer) -> bytes:
    return json.dumps(
        {
            "started_at": answer.started_at.isoformat(),
            "finished_at": answer.finished_at.isoformat(),
            "outcome": vars(answer.outcome),
        }
    ).encode()


def _decode_answer(message: bytes) -> Answer:
    fields = json.loads(message)
    return Answer(
        started_at=datetime.fromisoformat(fields["started_at"]),
        finished_at=datetime.fromisoformat(fields["finished_at"]),
        outcome=Outcome(**fields["outcome"]),
    )
