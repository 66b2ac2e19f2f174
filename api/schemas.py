"""The JSON shapes of the API (docs/CONTRACT.md), built from store rows."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Form
from pydantic import BaseModel, Field
from sqlalchemy import Row
from sqlalchemy.orm import Session

from jobs import store
from jobs.schema import UNFINISHED, Job
from jobs.settings import Settings

# The shipped models, listed in the schema so that clients (and fuzzers) know the valid names;
# the gateway still checks the configured `model_names` and answers 422 for any other.
MODEL_NAMES = Settings.model_fields["model_names"].default
ModelField = Annotated[
    str | None,
    Form(description="emnist47 (default) or emnist62", json_schema_extra={"enum": MODEL_NAMES}),
]
# Results per page when a request names no limit.
PAGE_LIMIT = 100


class Progress(BaseModel):
    total: int
    done: int
    failed: int


class Guess(BaseModel):
    label: str
    probability: float


class ItemOut(BaseModel):
    index: int
    filename: str
    status: str
    prediction: str | None = None
    confidence: float | None = None
    top5: list[Guess] | None = None
    error: str | None = None
    model_input: str | None = None


class ResultsPage(BaseModel):
    offset: int
    limit: int
    total: int
    items: list[ItemOut]


class JobOut(BaseModel):
    id: uuid.UUID
    status: str
    model: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    results: ResultsPage


class PredictOut(BaseModel):
    job: JobOut
    result: ItemOut


class ModelOut(BaseModel):
    name: str
    num_classes: int
    labels: list[str]
    metrics: dict[str, Any]
    default: bool = Field(description="The model a request that names none gets")


class ErrorOut(BaseModel):
    """The body of every error (api/errors.py): one sentence a person can act on."""

    detail: str


ERROR_MEANINGS = {
    400: "The multipart upload could not be parsed (malformed, too many parts, a field too large)",
    401: "API keys are required and the request has no valid one",
    404: "No such job (or not visible to this key)",
    409: "A conflict: the Idempotency-Key was already used for a different request, or the job "
    "to cancel has already finished",
    413: "The request, an archive or the number of images is over a limit",
    422: "The request is invalid: missing or malformed fields, unknown model, unusable archive",
    429: "Too many requests from this client; retry after `Retry-After` seconds",
    503: "The database is unavailable; retry after `Retry-After` seconds",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the errors a route answers, so clients and fuzzers know them."""
    return {code: {"model": ErrorOut, "description": ERROR_MEANINGS[code]} for code in codes}


def is_finished(job: JobOut | Job) -> bool:
    return job.status not in UNFINISHED


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def item_out(row: Row) -> ItemOut:
    result = row.Result
    if result is None:
        return ItemOut(index=row.index, filename=row.filename, status="pending")
    return ItemOut(
        index=row.index,
        filename=row.filename,
        status=result.status,
        prediction=result.prediction,
        confidence=result.confidence,
        top5=result.top5,
        error=result.error,
        model_input=result.model_input,
    )


def job_out(session: Session, job: Job, offset: int = 0, limit: int = PAGE_LIMIT) -> JobOut:
    rows = store.results_page(session, job.id, offset, limit)
    return JobOut(
        id=job.id,
        status=job.status,
        model=job.model,
        created_at=_utc(job.created_at),
        started_at=_utc(job.started_at),
        finished_at=_utc(job.finished_at),
        progress=Progress(**asdict(store.progress(session, job))),
        results=ResultsPage(
            offset=offset, limit=limit, total=job.total, items=[item_out(r) for r in rows]
        ),
    )
