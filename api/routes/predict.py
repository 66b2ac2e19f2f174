"""One canvas image: answered within `predict_wait_s` when a worker gets to it, else a job to poll.

With Redis as the broker the drawing goes through the canvas queue (`jobs.canvas_queue`): a
worker stores it as a finished job and answers at once, with no task and no read-back. Elsewhere
(the embedded default), or when no answer comes in time, it is a job like any other.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Annotated

from celery import Celery
from fastapi import APIRouter, File, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from api.canvas_answers import CanvasAnswers
from api.deps import CanvasAnswersDep, CeleryDep, OwnerDep, SettingsDep, WatcherDep
from api.routes.jobs import job_headers, read_job
from api.schemas import (
    PAGE_LIMIT,
    ItemOut,
    JobOut,
    ModelField,
    PredictOut,
    Progress,
    ResultsPage,
    error_responses,
    is_finished,
)
from api.submit import accept_upload, store_job, submit_job
from api.uploads import Upload
from jobs import canvas_queue
from jobs.canvas_queue import Answer, Drawing
from jobs.schema import utcnow
from jobs.settings import Settings

logger = logging.getLogger(__name__)

router = APIRouter(tags=["predict"])


@router.post(
    "/predict",
    response_model=PredictOut,
    responses={
        202: {"model": JobOut, "description": "Not finished in time; poll the job"},
        **error_responses(400, 401, 413, 422, 429, 503),
    },
)
async def predict(
    settings: SettingsDep,
    celery: CeleryDep,
    watcher: WatcherDep,
    answers: CanvasAnswersDep,
    owner: OwnerDep,
    file: Annotated[UploadFile, File(description="One image")],
    model: ModelField = None,
) -> PredictOut | JSONResponse:
    """200 with the result when it is ready within `predict_wait_s`, else 202 with the job."""
    if answers is None:
        job_id = await run_in_threadpool(
            submit_job, settings, celery, [file], model, for_canvas=True, owner=owner
        )
        await watcher.wait(job_id, settings.predict_wait_s)
    else:
        answered, job_id = await _through_canvas_queue(
            settings, celery, answers, file, model, owner
        )
        if answered is not None:
            return answered
    job = await run_in_threadpool(read_job, settings, job_id)
    if is_finished(job):
        return PredictOut(job=job, result=job.results.items[0])
    return JSONResponse(job.model_dump(mode="json"), 202, headers=job_headers(job))


async def _through_canvas_queue(
    settings: Settings,
    celery: Celery,
    answers: CanvasAnswers,
    file: UploadFile,
    model: str | None,
    owner: str,
) -> tuple[PredictOut | None, uuid.UUID]:
    """The worker's answer; without one in time, the id of the job the drawing is stored as."""
    drawing, message, upload = await run_in_threadpool(
        _drawing, settings, file, model, owner, answers.reply_to
    )
    try:
        answer = await answers.ask(drawing, message)
    except RedisError as error:
        logger.warning("canvas queue unavailable, storing the drawing as a job: %s", error)
        answer = None
    if answer is not None:
        return _answered(drawing, answer), drawing.job_id
    await run_in_threadpool(store_unanswered, settings, celery, drawing, upload)
    return None, drawing.job_id


def _drawing(
    settings: Settings, file: UploadFile, model: str | None, owner: str, reply_to: str
) -> tuple[Drawing, bytes, Upload]:
    """The checked upload as a drawing, and its message (built off the event loop: an image can
    be megabytes)."""
    model, upload = accept_upload(settings, [file], model, for_canvas=True)
    drawing = Drawing(
        job_id=uuid.uuid4(),
        model=model,
        owner=owner,
        filename=upload.items[0].filename,
        data=upload.items[0].data or b"",
        request_hash=upload.digest,
        created_at=utcnow(),
        answer_by=time.time() + settings.predict_wait_s,
        reply_to=reply_to,
    )
    return drawing, canvas_queue.encode(drawing), upload


def store_unanswered(settings: Settings, celery: Celery, drawing: Drawing, upload: Upload) -> None:
    """Store the drawing as a queued job under its id, unless a worker just stored it answered."""
    with contextlib.suppress(IntegrityError):
        store_job(
            settings,
            celery,
            drawing.model,
            upload,
            for_canvas=True,
            owner=drawing.owner,
            job_id=drawing.job_id,
        )


def _answered(drawing: Drawing, answer: Answer) -> PredictOut:
    """What a read of the job the worker stored would show, built without reading it."""
    result = ItemOut(filename=drawing.filename, **vars(answer.outcome))
    job = JobOut(
        id=drawing.job_id,
        status=answer.job_status,
        model=drawing.model,
        created_at=drawing.created_at,
        started_at=answer.started_at,
        finished_at=answer.finished_at,
        progress=Progress(total=1, done=1, failed=int(result.status == "failed")),
        results=ResultsPage(offset=0, limit=PAGE_LIMIT, total=1, items=[result]),
    )
    return PredictOut(job=job, result=result)
