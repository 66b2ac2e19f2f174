"""The real service for the benchmark: its own Postgres database and Redis keys, one Celery
worker, the gateway and the naive endpoint under uvicorn, each a subprocess.

Nothing is shared with the tests or a dev instance: a fresh `hwr_bench_*` database, Redis db
`HWR_BENCH_REDIS` with a unique key prefix, free ports; all of it is removed on exit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import redis
from alembic.config import Config
from sqlalchemy import make_url

from alembic import command
from jobs.db import engine_for
from jobs.settings import ROOT, Settings

POSTGRES_ADMIN = os.environ.get("HWR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HWR_BENCH_REDIS", "redis://127.0.0.1:6379/15")
START_S = 120
STOP_GRACE_S = 20


class StackError(RuntimeError):
    """A part of the stack is unreachable or did not start; the message says which."""


@dataclass(frozen=True)
class Stack:
    """Where the running stack answers, and its processes, for CPU accounting."""

    settings: Settings
    gateway_url: str
    naive_url: str
    processes: dict[str, subprocess.Popen]


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess exactly these settings."""
    fields = settings.model_dump(mode="json")
    return {
        **os.environ,
        **{
            f"HWR_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
            for name, value in fields.items()
        },
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def migrate(database_url: str) -> None:
    """The schema at head, made the only way it is made: by alembic."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


@contextmanager
def database(admin_url: str = POSTGRES_ADMIN, prefix: str = "hwr_bench") -> Iterator[str]:
    """A uniquely named database on the server `admin_url` reaches (its host, port and user),
    migrated to head, dropped (connections and all) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        raise StackError(f"PostgreSQL not reachable at {admin_url}: {error}") from error
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = (
            make_url(admin_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
        try:
            migrate(url)
            yield url
        finally:
            engine_for(url).dispose()
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A key prefix of this run only; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as error:
        raise StackError(f"Redis not reachable at {REDIS_URL}: {error}") from error
    prefix = f"hwr-bench-{uuid.uuid4().hex[:8]}:"
    try:
        yield prefix
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)


@contextmanager
def process(
    name: str, argv: list[str], env: dict[str, str], logs: Path
) -> Iterator[subprocess.Popen]:
    """A subprocess logging to `logs/<name>.log`, terminated (then killed) on exit."""
    with open(logs / f"{name}.log", "wb") as log:
        child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def uvicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip


def wait_until_ready(url: str, processes: dict[str, subprocess.Popen], logs: Path) -> None:
    """Poll `url` until it answers 200; fail early, with the log, when a process has died."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        for name, child in processes.items():
            if child.poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise StackError(f"{name} exited with {child.returncode}:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise StackError(f"{url} not ready after {START_S} s; logs in {logs}")


@contextmanager
def running_stack(overrides: dict[str, object], workers: int = 1) -> Iterator[Stack]:
    """Database, broker keys, `workers` worker processes ("worker", "worker-2", ...), gateway and
    naive endpoint, all ready; torn down after."""
    with ExitStack() as stack:
        state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hwr-bench-")))
        settings = Settings(
            **{
                "database_url": stack.enter_context(database()),
                "broker_url": REDIS_URL,
                "broker_key_prefix": stack.enter_context(redis_prefix()),
                "state_dir": state,
                "sweep_interval_s": 3600,
                "rate_limit": "",  # one benchmark client stands for many users
                **overrides,
            }
        )
        env = service_env(settings)
        gateway_port, naive_port = free_port(), free_port()
        worker_argv = [sys.executable, "-m", "celery", "-A", "worker.tasks", "worker", "-Q",
                       settings.job_queue, "-l", "warning", "--without-gossip", "--without-mingle",
                       "--without-heartbeat"]  # fmt: skip
        worker_names = ["worker", *(f"worker-{n}" for n in range(2, workers + 1))]
        processes = {
            **{
                name: stack.enter_context(
                    process(name, [*worker_argv, "-n", f"{name}@%h"], env, state)
                )
                for name in worker_names
            },
            "gateway": stack.enter_context(
                process("gateway", uvicorn("api.main:create_app", gateway_port), env, state)
            ),
            "naive": stack.enter_context(
                process("naive", uvicorn("bench.naive:create_app", naive_port), env, state)
            ),
        }
        gateway_url, naive_url = (
            f"http://127.0.0.1:{gateway_port}",
            f"http://127.0.0.1:{naive_port}",
        )
        wait_until_ready(f"{gateway_url}/readyz", processes, state)
        wait_until_ready(f"{naive_url}/healthz", processes, state)
        yield Stack(settings, gateway_url, naive_url, processes)
