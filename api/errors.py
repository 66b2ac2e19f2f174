"""Every error leaves as JSON `{"detail": "<human message>"}`, never as a stack trace.

A database or broker that cannot be reached (a restart) is the client's cue to come back, so it
answers 503 with `Retry-After` rather than 500.
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as BrokerUnreachable
from python_multipart.exceptions import MultipartParseError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.routing import Match, Route

from jobs.db import is_unavailable

logger = logging.getLogger(__name__)

# Long enough for a database or Redis restart to finish, short enough that nobody gives up.
RETRY_AFTER_S = 5


def _detail(error: HTTPException) -> str:
    cause = error.__cause__
    if isinstance(cause, MultiPartException | MultipartParseError):
        return f"The upload could not be read: {cause}"
    return str(error.detail)


def _allowed_methods(request: Request) -> str:
    """Every method served at this path: Starlette's 405 names only the first matching route's."""
    methods = {
        method
        for route in request.app.router.routes
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
        for method in route.methods or ()
    }
    return ", ".join(sorted(methods))


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    headers = error.headers
    if error.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return JSONResponse({"detail": _detail(error)}, status_code=error.status_code, headers=headers)


async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    """One readable sentence per problem, e.g. `path.job_id: Input should be a valid UUID`."""
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors()
    ]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


def unavailable(detail: str) -> JSONResponse:
    return JSONResponse(
        {"detail": detail}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def database_error(request: Request, error: Exception) -> JSONResponse:
    """503 while the database is unreachable; any other database error is a 500 like the rest."""
    if isinstance(error, psycopg.OperationalError) or is_unavailable(error):
        logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, error)
        return unavailable(
            f"The job database is unavailable; try again in {RETRY_AFTER_S} seconds."
        )
    return await unexpected_error(request, error)


async def broker_error(request: Request, error: Exception) -> JSONResponse:
    logger.warning("broker unreachable on %s %s: %s", request.method, request.url.path, error)
    return unavailable(f"The job queue is unavailable; try again in {RETRY_AFTER_S} seconds.")


async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": "Internal error; it has been logged."}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(psycopg.OperationalError, database_error)
    app.add_exception_handler(BrokerUnreachable, broker_error)
    app.add_exception_handler(Exception, unexpected_error)
