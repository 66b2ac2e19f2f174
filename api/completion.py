"""Waiting for canvas jobs to finish: one poll of the database per tick for all waiting requests.

Per-request polling would cost a query per client per tick and wake clients at scattered
moments; a shared tick wakes every client of one coalesced batch together, so their next
images arrive together and share a batch again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from fastapi.concurrency import run_in_threadpool

from jobs import store
from jobs.db import session_scope

logger = logging.getLogger(__name__)

TICK_S = 0.01


class CompletionWatcher:
    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._waiting: dict[uuid.UUID, asyncio.Future[None]] = {}

    async def wait(self, job_id: uuid.UUID, timeout_s: float) -> bool:
        """True once the job is finished, False if `timeout_s` passes first."""
        finished = self._waiting.setdefault(job_id, asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(finished), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiting.pop(job_id, None)

    async def run(self) -> None:
        """The shared tick; runs for the life of the app."""
        while True:
            await asyncio.sleep(TICK_S)
            if not self._waiting:
                continue
            try:
                finished = await run_in_threadpool(self._finished_among, list(self._waiting))
            except Exception:
                logger.exception("could not poll for finished jobs; retrying")
                continue
            for job_id in finished:
                future = self._waiting.get(job_id)
                if future is not None and not future.done():
                    future.set_result(None)

    def _finished_among(self, job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        with session_scope(self._database_url) as session:
            return store.finished_among(session, job_ids)
