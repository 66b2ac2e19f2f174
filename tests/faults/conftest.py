"""A stack the fault tests may break: private Postgres and Redis on free ports, worker, gateway.

The shared services on 5432 and 6379 serve other tests at the same time, so nothing here stops,
restarts or flushes them: this package starts its own throwaway instances. The sweep runs every
second and re-enqueues jobs idle for a few seconds, so lost queue messages come back quickly;
no rate limit applies, since every client here polls from one address, and the worker serves no
metrics port that another stack on this machine may be using.
In CI a missing binary is a failure; elsewhere the tests skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import kombu.pools
import pytest
import redis
from sqlalchemy import select

from bench.images import scan_pngs, zipped
from bench.stack import migrate
from jobs.db import engine_for, session_scope
from jobs.schema import UNFINISHED, Job, Result
from jobs.settings import ROOT, Settings
from tests.conftest import require
from tests.service.conftest import (  # noqa: F401 - models_dir is a shared fixture
    free_port,
    models_dir,
    service_env,
    start_worker,
    stop,
    wait_until_ready,
)

POSTGRES_VERSIONS = Path("/usr/lib/postgresql")
START_S = 30
SETTLE_S = 180
RETRY_S = 0.3
JOBS = "/api/v1/jobs"


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian keeps them off PATH), else PATH's."""
    installed = sorted(POSTGRES_VERSIONS.glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if installed:
        return installed[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; as root, run its tools as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    """A throwaway cluster in its own folder on a free port: `stop` then `start` is a restart."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="hwr-faults-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in a real restart."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        status = subprocess.run(as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data),
                                             "status"]), capture_output=True)  # fmt: skip
        return status.returncode == 0

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        argv = as_postgres([str(self.bin_dir / program), *args])
        subprocess.run(argv, check=True, capture_output=True, timeout=START_S)


class PrivateRedis:
    """A redis-server that keeps nothing on disk, so a restart starts empty as in production."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=3)

    def start(self) -> None:
        """Start the server; the connections this process pooled to a previous one are dead, so
        they are dropped and the next Celery app here (start_worker's ping) connects afresh."""
        kombu.pools.reset()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_S
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the private redis-server did not start"
                time.sleep(0.1)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@dataclass
class FaultStack:
    """The real service on private Postgres and Redis, with handles to break each part."""

    settings: Settings
    postgres: PrivatePostgres
    redis: PrivateRedis
    port: int = field(default_factory=free_port)
    worker: subprocess.Popen | None = None
    gateway: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_worker(self) -> None:
        self.worker = start_worker(self.settings)

    def start_gateway(self) -> None:
        """uvicorn on the same port every time, so clients keep their address across restarts."""
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT,
            env=service_env(self.settings),
        )  # fmt: skip
        wait_until_ready(self.base_url, self.gateway)

    def heal(self) -> None:
        """Start whatever a test left stopped or killed, so the next test finds a whole stack."""
        if not self.postgres.running():
            self.postgres.start()
        if not self.redis.running():
            self.redis.start()
        if self.worker is None or self.worker.poll() is not None:
            self.start_worker()
        if self.gateway is None or self.gateway.poll() is not None:
            self.start_gateway()

    def shut_down(self) -> None:
        for process in (self.gateway, self.worker):
            if process is not None:
                stop(process)
        self.redis.stop()
        engine_for(self.settings.database_url).dispose()
        self.postgres.remove()


def kill(process: subprocess.Popen) -> None:
    """SIGKILL: no shutdown handler runs, as when the kernel or an operator kills a process."""
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="package")
def fault_stack(models_dir: Path) -> Iterator[FaultStack]:  # noqa: F811 - the fixture
    bin_dir = postgres_bin_dir()
    require(bin_dir is not None, "PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    postgres = PrivatePostgres(bin_dir)
    private_redis = PrivateRedis()
    stack = FaultStack(
        settings=Settings(
            database_url=postgres.url,
            broker_url=private_redis.url,
            models_dir=models_dir,
            state_dir=postgres.folder,
            torch_threads=1,
            worker_concurrency=4,
            inference_batch_size=10,
            predict_wait_s=5.0,
            sweep_interval_s=1.0,
            stuck_after_s=4.0,
            rate_limit="",
            worker_metrics_port=0,
        ),
        postgres=postgres,
        redis=private_redis,
    )
    try:
        postgres.start()
        migrate(postgres.url)
        stack.heal()
        yield stack
    finally:
        stack.shut_down()


@pytest.fixture(autouse=True)
def whole_stack(fault_stack: FaultStack) -> Iterator[None]:
    """Each test starts on a whole stack, whatever the previous one broke and failed to mend."""
    fault_stack.heal()
    yield
    fault_stack.heal()


@pytest.fixture(scope="package")
def scans(emnist_dir: Path) -> list[bytes]:
    """Real EMNIST letters as small scanned PNGs; a zip of them makes a batch job."""
    return scan_pngs(emnist_dir, 600)


class PatientClient:
    """A client that behaves as the API asks: after a 503 it comes back (and the 503 must say
    when), a refused connection is retried, and an Idempotency-Key makes a resent upload one job.
    """

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.statuses: list[int] = []

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        deadline = time.monotonic() + SETTLE_S
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                response = None
            if response is not None:
                self.statuses.append(response.status_code)
                if response.status_code != 503:
                    return response
                assert response.headers["Retry-After"].isdigit(), response.headers
            assert time.monotonic() < deadline, f"{method} {path} never answered"
            time.sleep(RETRY_S)

    def submit(self, pngs: list[bytes]) -> str:
        """Upload the images as one zip; returns the accepted job's id."""
        response = self.request(
            "POST",
            JOBS,
            files={"files": ("scans.zip", zipped(pngs), "application/zip")},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        response = self.request("GET", f"{JOBS}/{job_id}", params={"limit": 1})
        assert response.status_code == 200, response.text
        return response.json()

    def wait_until_finished(self, job_id: str) -> dict:
        deadline = time.monotonic() + SETTLE_S
        while (job := self.job(job_id))["status"] in UNFINISHED:
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
            time.sleep(RETRY_S)
        return job

    def wait_until_started(self, job_id: str) -> dict:
        """The job once some of its items have a result."""
        deadline = time.monotonic() + SETTLE_S
        while (job := self.job(job_id))["progress"]["done"] == 0:
            assert time.monotonic() < deadline, f"job {job_id} never started"
            time.sleep(0.05)
        return job

    def server_errors(self) -> list[int]:
        """Every 5xx this client saw, but the 503s that said when to come back."""
        return [status for status in self.statuses if status >= 500 and status != 503]


def job_ids(settings: Settings) -> set[uuid.UUID]:
    with session_scope(settings.database_url) as session:
        return set(session.scalars(select(Job.id)))


def unfinished(settings: Settings, job_id: str) -> bool:
    with session_scope(settings.database_url) as session:
        return session.get(Job, uuid.UUID(job_id)).status in UNFINISHED


def assert_each_job_succeeded_once(
    settings: Settings, before: set[uuid.UUID], accepted: dict[str, int]
) -> None:
    """The jobs created since `before` are exactly the accepted ones (`id: images`), each ended
    succeeded with one succeeded result for each of its items, none missing and none extra."""
    with session_scope(settings.database_url) as session:
        jobs = {str(job.id): job for job in session.scalars(select(Job)) if job.id not in before}
        assert set(jobs) == set(accepted), "a job was lost, or one upload made two jobs"
        for job_id, job in jobs.items():
            assert job.status == "succeeded", (job_id, job.status)
            rows = session.execute(
                select(Result.index, Result.status).where(Result.job_id == job.id)
            ).all()
            assert sorted(index for index, _ in rows) == list(range(accepted[job_id])), job_id
            assert {status for _, status in rows} == {"succeeded"}, job_id
