"""Waiting for canvas jobs to finish, for all waiting requests of this gateway at once.

On Postgres a worker announces each finished job with NOTIFY, so a wait costs no query; a slow
shared poll only backs up notifications lost while reconnecting. Elsewhere (SQLite) one shared
poll per tick serves every waiting request, waking the clients of one batch together.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import psycopg
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import make_url

from jobs import store
from jobs.db import session_scope

logger = logging.getLogger(__name__)

TICK_S = 0.01
BACKUP_TICK_S = 1.0
RECONNECT_S = 1.0
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
# Jobs announced just before their request started waiting; enough for any burst of requests.
RECENT_JOBS = 4096


class CompletionWatcher:
    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._waiting: dict[uuid.UUID, asyncio.Future[None]] = {}
        self._recent: dict[uuid.UUID, None] = {}

    async def wait(self, job_id: uuid.UUID, timeout_s: float) -> bool:
        """True once the job is finished, False if `timeout_s` passes first."""
        if job_id in self._recent:
            return True
        finished = self._waiting.setdefault(job_id, asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(finished), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiting.pop(job_id, None)

    async def run(self) -> None:
        """Listens where the database can notify, polls otherwise; runs for the life of the app."""
        url = make_url(self._database_url)
        if url.get_backend_name() != "postgresql":
            await self._poll(TICK_S)
            return
        listen_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        await asyncio.gather(self._poll(BACKUP_TICK_S), self._listen(listen_url))

    async def _listen(self, url: str) -> None:
        """LISTEN for as long as the app runs, connecting again after a restart of Postgres.

        TCP keepalives end a connection whose server vanished without closing it (a host lost
        rather than restarted), which would otherwise wait for notifications forever.
        """
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    url, autocommit=True, **KEEPALIVES
                ) as db:
                    await db.execute(f"LISTEN {store.FINISHED_CHANNEL}")
                    async for notice in db.notifies():
                        self._finished({uuid.UUID(notice.payload)})
            except psycopg.OperationalError as error:
                logger.warning("job-finished notifications lost, reconnecting: %s", error)
            except Exception:
                logger.exception("job-finished notifications lost; reconnecting")
            await asyncio.sleep(RECONNECT_S)

    async def _poll(self, tick_s: float) -> None:
        while True:
            await asyncio.sleep(tick_s)
            if not self._waiting:
                continue
            try:
                finished = await run_in_threadpool(self._finished_among, list(self._waiting))
            except Exception:
                logger.exception("could not poll for finished jobs; retrying")
                continue
            self._finished(finished)

    def _finished(self, job_ids: set[uuid.UUID]) -> None:
        for job_id in job_ids:
            self._recent[job_id] = None
            future = self._waiting.get(job_id)
            if future is not None and not future.done():
                future.set_result(None)
        while len(self._recent) > RECENT_JOBS:
            del self._recent[next(iter(self._recent))]

    def _finished_among(self, job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        with session_scope(self._database_url) as session:
            return store.finished_among(session, job_ids)
