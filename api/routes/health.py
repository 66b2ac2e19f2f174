"""Liveness (the process answers) and readiness (database, broker and a worker all answer).

Not ready is a 503 with `Retry-After`, as a load balancer or a restarting dependency expects.
Both need no key, so readiness is checked at most once per `READY_FOR_S`, whoever asks: a flood
of /readyz costs one database query and one worker ping per period, not one per request.
"""

from __future__ import annotations

import math
import threading
import time

from celery import Celery
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.errors import RETRY_AFTER_S
from api.schemas import error_responses
from jobs.db import session_scope
from jobs.settings import Settings

router = APIRouter(tags=["health"])

PING_TIMEOUT_S = 1.0
READY_FOR_S = 1.0


class Readiness:
    """The last readiness checks, shared by every request for `READY_FOR_S`."""

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self._settings = settings
        self._celery = celery
        self._lock = threading.Lock()
        self._checked_at = -math.inf
        self._checks: dict[str, str] = {}

    def checks(self) -> dict[str, str]:
        """Per part, "ok" or what is wrong. While a check runs (a worker ping can take a second,
        an unreachable database longer), others get the last answer instead of a thread each
        waiting; only the very first check is waited for."""
        if time.monotonic() - self._checked_at < READY_FOR_S:
            return self._checks
        if not self._lock.acquire(blocking=not self._checks):
            return self._checks
        try:
            if time.monotonic() - self._checked_at >= READY_FOR_S:
                self._checks = self._check()
                self._checked_at = time.monotonic()
            return self._checks
        finally:
            self._lock.release()

    def _check(self) -> dict[str, str]:
        checks = {"database": "ok", "broker": "ok", "worker": "ok"}
        try:
            with session_scope(self._settings.database_url) as session:
                session.execute(text("SELECT 1"))
        except Exception as error:
            checks["database"] = f"unreachable: {type(error).__name__}"
        try:
            with self._celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=PING_TIMEOUT_S)
            if not self._celery.control.ping(timeout=PING_TIMEOUT_S, limit=1):
                checks["worker"] = "no worker answered"
        except Exception as error:
            checks["broker"] = checks["worker"] = f"unreachable: {type(error).__name__}"
        return checks


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
def readyz(request: Request) -> JSONResponse:
    checks = request.app.state.readiness.checks()
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        body = {"status": "unavailable", "detail": f"Not ready: {', '.join(failed)}.", **checks}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    return JSONResponse({"status": "ok", **checks})
