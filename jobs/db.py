"""One engine per database URL per process, short-lived sessions on it, and retries of them.

A database restart shows up as `DBAPIError`s that say the connection is gone; `is_unavailable`
tells those apart from a bad statement, so the gateway can answer 503 and workers can retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 30
# A database host that does not answer at all fails a connection after this, not the TCP timeout.
CONNECT_TIMEOUT_S = 5
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


def _tune_sqlite(connection: Any, _record: Any) -> None:
    """WAL lets the gateway read while a worker writes; the busy timeout queues the writers."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA synchronous=NORMAL")


@lru_cache
def engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=30,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


@lru_cache
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits when the block ends cleanly and rolls back otherwise."""
    with _session_factory(url).begin() as session:
        yield session


def is_unavailable(error: BaseException) -> bool:
    """True when the database could not be reached or dropped the connection (worth a retry).

    OperationalError is the DBAPI's class for failures outside the statement: refused or lost
    connections, an administrator shutdown, a database still starting, a deadlock.
    """
    return isinstance(error, DBAPIError) and (
        isinstance(error, OperationalError) or error.connection_invalidated
    )


def retrying(url: str, work: Callable[[Session], T], give_up_after_s: float) -> T:
    """`work` in a transaction, redone whole with backoff while the database is unavailable.

    A transaction that failed never committed, so redoing it is safe when `work` is idempotent.
    """
    deadline = time.monotonic() + give_up_after_s
    delay = RETRY_FIRST_S
    while True:
        try:
            with session_scope(url) as session:
                return work(session)
        except DBAPIError as error:
            if not is_unavailable(error) or time.monotonic() + delay > deadline:
                raise
            logger.warning("database unavailable, retrying in %.1f s: %s", delay, error.orig)
        time.sleep(delay)
        delay = min(2 * delay, RETRY_MAX_S)
