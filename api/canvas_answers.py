"""Waiting for the canvas queue's answers, for all waiting requests of this gateway at once.

Workers put the answers to this gateway's drawings on one list of its own; one task reads it and
hands each answer to its request, so a waiting request holds no Redis connection (a request each
would take one per drawing being drawn).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobs import canvas_queue
from jobs.canvas_queue import Answer, Drawing
from jobs.settings import Settings

logger = logging.getLogger(__name__)

# How long one read of the answers blocks; short, so a lost Redis connection shows soon.
READ_BLOCK_S = 1.0
# Most answers taken off the list in one read, beyond the first.
READ_MOST = 1000
RECONNECT_S = 1.0


class CanvasAnswers:
    """This gateway's list of answers (`reply_to`, named per process) and the requests waiting
    on it, by job id."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self.reply_to = canvas_queue.answers_key(settings, uuid.uuid4().hex)
        self._waiting: dict[uuid.UUID, asyncio.Future[Answer]] = {}

    async def ask(self, drawing: Drawing, message: bytes) -> Answer | None:
        """Queue the drawing (`message`, its `encode`) and wait up to `predict_wait_s` for its
        answer. None when none came; the drawing is then off the list, or in a worker's hands."""
        answered = self._waiting[drawing.job_id] = asyncio.get_running_loop().create_future()
        try:
            await canvas_queue.push(self._redis, self._settings, message)
            return await asyncio.wait_for(answered, self._settings.predict_wait_s)
        except TimeoutError:
            await canvas_queue.take_back(self._redis, self._settings, message)
            return None
        finally:
            self._waiting.pop(drawing.job_id, None)

    async def run(self) -> None:
        """Read this gateway's answers for as long as the app runs."""
        while True:
            try:
                answers = await canvas_queue.read_answers(
                    self._redis, self.reply_to, READ_BLOCK_S, READ_MOST
                )
            except RedisError as error:
                logger.warning("canvas answers unavailable, reading again: %s", error)
                await asyncio.sleep(RECONNECT_S)
                continue
            except Exception:
                logger.exception("canvas answers lost; reading again")
                await asyncio.sleep(RECONNECT_S)
                continue
            for answer in answers:
                waiting = self._waiting.get(answer.job_id)
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
