"""Structured logs: one JSON object per line, each carrying the job id it concerns.

The job id travels in a context variable, set by the gateway while it handles a job and by the
worker while it runs one, so every log line in between names its job without being told.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from jobs.settings import Settings

current_job_id: ContextVar[str | None] = ContextVar("current_job_id", default=None)

JSON_FIELDS = "{asctime}{levelname}{name}{message}"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [job %(job_id)s] %(message)s"
# Loggers that install their own handlers; routed through ours so every line has one format.
FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")


class JobIdFilter(logging.Filter):
    """Stamps each record with the job id of its context (None outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job_id.get()
        return True


@contextmanager
def job_context(job_id: object) -> Iterator[None]:
    """Log lines written inside the block carry `job_id`."""
    token = current_job_id.set(str(job_id))
    try:
        yield
    finally:
        current_job_id.reset(token)


def configure_logging(settings: Settings) -> None:
    """Send every logger of the process to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, style="{", rename_fields={"levelname": "level"})
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in FOREIGN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
