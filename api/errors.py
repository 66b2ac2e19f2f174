"""Every error leaves as JSON `{"detail": "<human message>"}`, never as a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from python_multipart.exceptions import MultipartParseError
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

logger = logging.getLogger(__name__)


def _detail(error: HTTPException) -> str:
    cause = error.__cause__
    if isinstance(cause, MultiPartException | MultipartParseError):
        return f"The upload could not be read: {cause}"
    return str(error.detail)


async def http_error(_request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse(
        {"detail": _detail(error)}, status_code=error.status_code, headers=error.headers
    )


async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    """One readable sentence per problem, e.g. `path.job_id: Input should be a valid UUID`."""
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors()
    ]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": "Internal error; it has been logged."}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
