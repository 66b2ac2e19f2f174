"""Liveness (the process answers) and readiness (database, broker and a worker all answer).

Not ready is a 503 with `Retry-After`, as a load balancer or a restarting dependency expects.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import CeleryDep, SettingsDep
from api.errors import RETRY_AFTER_S
from api.schemas import error_responses
from jobs.db import session_scope

router = APIRouter(tags=["health"])

PING_TIMEOUT_S = 1.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
def readyz(settings: SettingsDep, celery: CeleryDep) -> JSONResponse:
    checks = {"database": "ok", "broker": "ok", "worker": "ok"}
    try:
        with session_scope(settings.database_url) as session:
            session.execute(text("SELECT 1"))
    except Exception as error:
        checks["database"] = f"unreachable: {type(error).__name__}"
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=PING_TIMEOUT_S)
        if not celery.control.ping(timeout=PING_TIMEOUT_S, limit=1):
            checks["worker"] = "no worker answered"
    except Exception as error:
        checks["broker"] = checks["worker"] = f"unreachable: {type(error).__name__}"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        body = {"status": "unavailable", "detail": f"Not ready: {', '.join(failed)}.", **checks}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    return JSONResponse({"status": "ok", **checks})
