"""PostgreSQL restarted under load: while it is down the gateway answers 503 with Retry-After
(never 500), workers retry their writes, and everything recovers by itself once it is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
from sqlalchemy import make_url, select
from sqlalchemy.orm import Session

from api.completion import CompletionWatcher
from jobs import store
from jobs.db import retrying
from jobs.schema import Job
from tests.faults.conftest import (
    JOBS,
    SETTLE_S,
    FaultStack,
    PatientClient,
    assert_each_job_succeeded_once,
    job_ids,
)

JOB = 300


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert "unavailable" in response.json()["detail"]


def test_gateway_answers_503_while_postgres_is_down_and_recovers(
    fault_stack: FaultStack, scans: list[bytes]
):
    settings = fault_stack.settings
    before = job_ids(settings)
    client = PatientClient(fault_stack.base_url)
    running = [client.submit(scans[:JOB]) for _ in range(3)]
    client.wait_until_started(running[0])

    fault_stack.postgres.stop()
    with httpx.Client(base_url=fault_stack.base_url, timeout=30) as http:
        assert_unavailable(http.get(f"{JOBS}/{running[0]}"))
        assert_unavailable(http.post(JOBS, files={"files": ("a.png", scans[0], "image/png")}))
        assert_unavailable(http.post("/api/v1/predict", files={"file": ("a.png", scans[0])}))
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"].startswith("unreachable")
        assert ready.headers["Retry-After"]
        assert http.get("/healthz").status_code == 200
    fault_stack.postgres.start()

    for job_id in running:
        assert client.wait_until_finished(job_id)["status"] == "succeeded"
    assert_each_job_succeeded_once(settings, before, dict.fromkeys(running, JOB))
    assert client.server_errors() == []


def test_a_worker_transaction_is_redone_until_postgres_is_back(fault_stack: FaultStack):
    """What every worker write goes through: attempts while the database is down fail, and the
    call returns once it is back instead of failing the task."""
    attempts: list[int] = []

    def count_jobs(session: Session) -> int:
        attempts.append(1)
        return len(session.scalars(select(Job.id)).all())

    fault_stack.postgres.stop()
    with ThreadPoolExecutor(1) as pool:
        counted = pool.submit(retrying, fault_stack.settings.database_url, count_jobs, SETTLE_S)
        deadline = time.monotonic() + SETTLE_S
        while len(attempts) < 3:
            assert time.monotonic() < deadline and not counted.done(), counted
            time.sleep(0.05)
        fault_stack.postgres.start()
        assert counted.result() >= 0
    assert len(attempts) > 3


async def heard(watcher: CompletionWatcher, listen_url: str) -> bool:
    """Whether a NOTIFY for a job that does not exist reaches the watcher: no poll can see
    such a job finished, so only a working LISTEN connection can deliver it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while loop.time() < deadline:
        job_id = uuid.uuid4()
        try:
            async with await psycopg.AsyncConnection.connect(listen_url, autocommit=True) as db:
                await db.execute("SELECT pg_notify(%s, %s)", (store.FINISHED_CHANNEL, str(job_id)))
        except psycopg.OperationalError:
            await asyncio.sleep(0.2)
            continue
        if await watcher.wait(job_id, 0.5):
            return True
    return False


def test_completion_watcher_listens_again_after_postgres_restarts(fault_stack: FaultStack):
    url = fault_stack.settings.database_url
    listen_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def scenario() -> tuple[bool, bool]:
        watcher = CompletionWatcher(url)
        watching = asyncio.create_task(watcher.run())
        first = await heard(watcher, listen_url)
        await asyncio.to_thread(fault_stack.postgres.stop)
        await asyncio.to_thread(fault_stack.postgres.start)
        again = await heard(watcher, listen_url)
        watching.cancel()
        return first, again

    # A thread of its own: Playwright's sync API, alive for the session, holds this thread's loop.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, scenario()).result() == (True, True)
