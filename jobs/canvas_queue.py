"""The canvas queue: drawings that a worker answers first and stores right after, on Redis.

A drawing sent as a job costs two commits at the gateway, a Celery task, two transactions at the
worker and a read-back: about 25 ms of server CPU, where preprocessing and the forward pass take
about 2 ms. Where the broker is Redis, the gateway instead pushes the drawing onto a list of its
job queue; a worker takes what is on the list, runs it as one forward pass per model, stores the
drawings as finished jobs in one transaction, and only then answers each on its gateway's list
of answers, which one task of that gateway reads for all its waiting requests
(`api/canvas_answers.py`).

The job id is the gateway's, so the database settles the one race. A gateway that waited in vain
takes its drawing back off the list (so the list holds only drawings someone waits for) and
stores it as a queued job under that id; if a worker had already taken it, whichever of the two
stores it first wins, and a worker that finds the id taken does not answer. Either way the
drawing is stored once and nothing accepted is lost.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobs.schema import JobStatus
from jobs.settings import Settings
from jobs.store import Outcome

logger = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis", "rediss")
# Answers nobody reads (their gateway is gone) are dropped after this.
ANSWER_KEPT_S = 60
# A Redis that does not accept a connection in this long counts as down: the drawing becomes a job.
CONNECT_TIMEOUT_S = 2.0
# Beyond a blocking wait, how long a reply may take before the connection counts as lost.
REPLY_MARGIN_S = 5.0
# A drawing with less time than this left before its gateway stops waiting is not worth reading.
ANSWER_MARGIN_S = 0.1


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
    reply_to: str

    def is_stale(self) -> bool:
        """Too late to answer by this host's clock (hosts' clocks are assumed to agree)."""
        return self.answer_by - ANSWER_MARGIN_S <= time.time()


@dataclass(frozen=True)
class Answer:
    """What a waiting gateway needs to answer /predict as a read of the stored job would."""

    job_id: uuid.UUID
    job_status: str
    started_at: datetime
    finished_at: datetime
    outcome: Outcome


def enabled(settings: Settings) -> bool:
    """Gateways use the canvas queue with Redis as the broker, and a wait to answer within."""
    return uses_redis(settings) and settings.predict_wait_s > 0


def uses_redis(settings: Settings) -> bool:
    """Workers answer the canvas queue wherever the broker is Redis, whatever gateways wait."""
    return settings.broker_url.split("://", 1)[0] in REDIS_SCHEMES


def connect(settings: Settings, longest_wait_s: float) -> Redis:
    """A client that fails fast rather than retrying (the caller has a way round a lost Redis)."""
    return Redis.from_url(
        settings.broker_url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=longest_wait_s + REPLY_MARGIN_S,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )


def connect_async(settings: Settings) -> AsyncRedis:
    """The gateway's client: as `connect`, for waits of up to `predict_wait_s`."""
    return AsyncRedis.from_url(
        settings.broker_url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=settings.predict_wait_s + REPLY_MARGIN_S,
        socket_keepalive=True,
        retry=AsyncRetry(NoBackoff(), 0),
    )


def drawings_key(settings: Settings, queue: str) -> str:
    return f"{settings.broker_key_prefix}canvas:{queue}"


def answers_key(settings: Settings, gateway: str) -> str:
    """The list a gateway (`gateway`: an id of its own) reads its answers from."""
    return f"{settings.broker_key_prefix}canvas:answers:{gateway}"


async def push(redis: AsyncRedis, settings: Settings, message: bytes) -> None:
    """Queue a drawing (`message`, its `encode`) on the gateway's job queue."""
    key = drawings_key(settings, settings.job_queue)
    async with redis.pipeline(transaction=False) as pipeline:
        pipeline.rpush(key, message)
        # Drawings whose gateway died before taking them back go when the list is idle this long.
        pipeline.expire(key, math.ceil(2 * settings.predict_wait_s))
        await pipeline.execute()


async def take_back(redis: AsyncRedis, settings: Settings, message: bytes) -> None:
    """Off the list with a drawing nobody answered in time, unless a worker has it already."""
    await redis.lrem(drawings_key(settings, settings.job_queue), 1, message)


async def read_answers(redis: AsyncRedis, key: str, block_s: float, most: int) -> list[Answer]:
    """The answers on `key`, waiting up to `block_s` for a first; unreadable ones are logged."""
    popped = await redis.blpop([key], block_s)
    if popped is None:
        return []
    answers: list[Answer] = []
    for message in [popped[1], *(await redis.lpop(key, most) or [])]:
        try:
            answers.append(_decode_answer(message))
        except (ValueError, TypeError, KeyError):
            logger.exception("an unreadable answer was dropped; its drawing is stored as a job")
    return answers


def take(
    redis: Redis, keys: list[str], most: int, most_bytes: int, block_s: float
) -> list[Drawing]:
    """What is queued on the first of `keys` that holds any: up to `most` drawings of at most
    `most_bytes` in all (at least one); waits up to `block_s` for the first, never for more."""
    popped = redis.blpop(keys, block_s)
    if popped is None:
        return []
    key, first = popped
    return _decoded([first, *_pop(redis, key, most - 1, most_bytes - len(first))])


def take_waiting(redis: Redis, keys: list[str], most: int, most_bytes: int) -> list[Drawing]:
    """As `take`, but from every one of `keys` in turn, and without waiting at all."""
    messages: list[bytes] = []
    for key in keys:
        taken = _pop(redis, key, most - len(messages), most_bytes - sum(map(len, messages)))
        messages += taken
    return _decoded(messages)


def _pop(redis: Redis, key: str, most: int, most_bytes: int) -> list[bytes]:
    """Up to `most` messages of at most `most_bytes` in all off the head of `key`; those past the
    budget go back to the head, in their order."""
    if most <= 0 or most_bytes <= 0:
        return []
    popped: list[bytes] = redis.lpop(key, most) or []
    kept, size = 0, 0
    while kept < len(popped) and size + len(popped[kept]) <= most_bytes:
        size += len(popped[kept])
        kept += 1
    if kept < len(popped):
        redis.lpush(key, *reversed(popped[kept:]))
    return popped[:kept]


def give(redis: Redis, settings: Settings, answers: list[tuple[str, Answer]]) -> None:
    """Hand each answer to the list of the gateway waiting for it, (`reply_to`, answer)."""
    lists = answers_key(settings, "")
    with redis.pipeline(transaction=False) as pipeline:
        for reply_to, answer in answers:
            if reply_to.startswith(lists):  # a list of answers, never any other key
                pipeline.rpush(reply_to, _encode_answer(answer))
                pipeline.expire(reply_to, ANSWER_KEPT_S)
        pipeline.execute()


def encode(drawing: Drawing) -> bytes:
    """The drawing as queued: JSON, its image in base64."""
    fields = vars(drawing) | {
        "job_id": str(drawing.job_id),
        "data": base64.b64encode(drawing.data).decode(),
        "created_at": drawing.created_at.isoformat(),
    }
    return json.dumps(fields).encode()


def _decoded(messages: list[bytes]) -> list[Drawing]:
    """The drawings of `messages`, each alone: one that cannot be read (from another version of
    the gateway, say) is logged and left to its gateway, which stores it as a job."""
    drawings: list[Drawing] = []
    for message in messages:
        try:
            drawings.append(_decode_drawing(message))
        except (ValueError, TypeError, KeyError):
            logger.exception("an unreadable drawing was left to its gateway")
    return drawings


def _decode_drawing(message: bytes) -> Drawing:
    fields: dict[str, Any] = json.loads(message)
    return Drawing(
        job_id=uuid.UUID(fields["job_id"]),
        model=str(fields["model"]),
        owner=str(fields["owner"]),
        filename=str(fields["filename"]),
        data=base64.b64decode(fields["data"], validate=True),
        request_hash=str(fields["request_hash"]),
        created_at=datetime.fromisoformat(fields["created_at"]),
        answer_by=float(fields["answer_by"]),
        reply_to=str(fields["reply_to"]),
    )


def _encode_answer(answer: Answer) -> bytes:
    return json.dumps(
        {
            "job_id": str(answer.job_id),
            "job_status": answer.job_status,
            "started_at": answer.started_at.isoformat(),
            "finished_at": answer.finished_at.isoformat(),
            "outcome": vars(answer.outcome),
        }
    ).encode()


def _decode_answer(message: bytes) -> Answer:
    fields = json.loads(message)
    outcome = {field.name: fields["outcome"][field.name] for field in dataclasses.fields(Outcome)}
    return Answer(
        job_id=uuid.UUID(fields["job_id"]),
        job_status=JobStatus(fields["job_status"]),
        started_at=datetime.fromisoformat(fields["started_at"]),
        finished_at=datetime.fromisoformat(fields["finished_at"]),
        outcome=Outcome(**outcome),
    )
