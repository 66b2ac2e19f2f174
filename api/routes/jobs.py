"""Batch jobs: submit images or zips, poll status and results, download CSV, cancel, delete."""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, File, Header, HTTPException, Query, Response, UploadFile
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from api.deps import CeleryDep, OwnerDep, SettingsDep
from api.schemas import (
    PAGE_LIMIT,
    JobOut,
    ModelField,
    error_responses,
    is_finished,
    item_out,
    job_out,
)
from api.submit import submit_job
from jobs import store
from jobs.db import session_scope
from jobs.logs import job_context
from jobs.schema import Job
from jobs.settings import Settings

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"])

POLL_AFTER_S = "1"
CSV_PAGE = 1000
# Past any job's end (an empty page), yet within every database's integer range.
MAX_OFFSET = 2**31 - 1
CSV_COLUMNS = ("index", "filename", "status", "prediction", "confidence", "error")
# Text a spreadsheet would run as a formula when it opens the CSV (CSV injection); such a cell,
# in practice an uploaded file's name, is written with a leading apostrophe, as OWASP advises.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def read_job(
    settings: Settings,
    job_id: uuid.UUID,
    offset: int = 0,
    limit: int = PAGE_LIMIT,
    owner: str | None = None,
) -> JobOut:
    """The job as clients see it; 404 when it is missing or `owner` did not create it."""
    with session_scope(settings.database_url) as session:
        job = store.get_job(session, job_id, owner=owner)
        if job is None:
            raise HTTPException(404, f"No job {job_id}.")
        return job_out(session, job, offset, limit)


def job_headers(job: JobOut) -> dict[str, str]:
    """Where to poll a job, and while it is not finished, when to poll again."""
    headers = {"Location": f"/api/v1/jobs/{job.id}"}
    if not is_finished(job):
        headers["Retry-After"] = POLL_AFTER_S
    return headers


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses=error_responses(400, 401, 409, 413, 422, 429, 503),
)
def create_job(
    settings: SettingsDep,
    celery: CeleryDep,
    owner: OwnerDep,
    response: Response,
    files: Annotated[
        list[UploadFile], File(description="Images and/or zip archives of images", min_length=1)
    ],
    model: ModelField = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobOut:
    """Validate the upload, store it and queue it; answers 202 with the job."""
    job_id = submit_job(
        settings, celery, files, model, idempotency_key=idempotency_key, owner=owner
    )
    job = read_job(settings, job_id)
    with job_context(job_id):
        logger.info("job accepted", extra={"model": job.model, "items": job.progress.total})
    response.headers.update(job_headers(job))
    return job


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(401, 404, 422, 429, 503))
def get_job(
    settings: SettingsDep,
    owner: OwnerDep,
    response: Response,
    job_id: uuid.UUID,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = PAGE_LIMIT,
) -> JobOut:
    """Status, progress and one page of results."""
    job = read_job(settings, job_id, offset, limit, owner)
    response.headers.update(job_headers(job))
    return job


@router.get(
    "/{job_id}/results.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"},
        **error_responses(401, 404, 422, 429, 503),
    },
)
def results_csv(settings: SettingsDep, owner: OwnerDep, job_id: uuid.UUID) -> StreamingResponse:
    """Every item as a CSV row: index, filename, status, prediction, confidence, error."""
    read_job(settings, job_id, limit=1, owner=owner)
    headers = {"Content-Disposition": f'attachment; filename="job-{job_id}.csv"'}
    return StreamingResponse(_csv_rows(settings, job_id), media_type="text/csv", headers=headers)


def _csv_rows(settings: Settings, job_id: uuid.UUID) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    offset = 0
    while True:
        with session_scope(settings.database_url) as session:
            rows = [item_out(row) for row in store.results_page(session, job_id, offset, CSV_PAGE)]
        writer.writerows([_cell(getattr(item, column)) for column in CSV_COLUMNS] for item in rows)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < CSV_PAGE:
            return
        offset += CSV_PAGE


def _cell(value: object) -> object:
    """The value as a spreadsheet shows it, never as a formula it runs."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses=error_responses(401, 404, 409, 422, 429, 503),
)
def cancel_job(settings: SettingsDep, owner: OwnerDep, job_id: uuid.UUID) -> JobOut:
    """Cancel an unfinished job (answers the job); a finished one is left as it is (409), so a
    cancel that crosses the job's end never costs its results, as DELETE would."""
    with job_context(job_id), session_scope(settings.database_url) as session:
        job = _locked_job(session, job_id, owner)
        if is_finished(job):
            raise HTTPException(409, f"The job already {job.status}: there is nothing to cancel.")
        store.cancel_job(session, job)
        logger.info("job canceled")
    return read_job(settings, job_id)


@router.delete(
    "/{job_id}",
    response_model=JobOut,
    responses={204: {"description": "Deleted"}, **error_responses(401, 404, 422, 429, 503)},
)
def cancel_or_delete_job(
    settings: SettingsDep, owner: OwnerDep, job_id: uuid.UUID
) -> Response | JobOut:
    """Cancel an unfinished job (answers the job); delete a finished one (answers 204)."""
    with job_context(job_id), session_scope(settings.database_url) as session:
        job = _locked_job(session, job_id, owner)
        if is_finished(job):
            store.delete_job(session, job)
            logger.info("job deleted")
            return Response(status_code=204)
        store.cancel_job(session, job)
        logger.info("job canceled")
    return read_job(settings, job_id)


def _locked_job(session: Session, job_id: uuid.UUID, owner: str) -> Job:
    """The owner's job, its row locked for a cancel or delete; 404 when there is none."""
    job = store.get_job(session, job_id, for_update=True, owner=owner)
    if job is None:
        raise HTTPException(404, f"No job {job_id}.")
    return job
