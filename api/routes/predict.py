"""One canvas image: a job like any other, but the answer waits briefly for its result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import CeleryDep, OwnerDep, SettingsDep, WatcherDep
from api.routes.jobs import job_headers, read_job
from api.schemas import JobOut, ModelField, PredictOut, error_responses, is_finished
from api.submit import submit_job

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
    owner: OwnerDep,
    file: Annotated[UploadFile, File(description="One image")],
    model: ModelField = None,
) -> PredictOut | JSONResponse:
    """200 with the result when it is ready within `predict_wait_s`, else 202 with the job."""
    job_id = await run_in_threadpool(
        submit_job, settings, celery, [file], model, for_canvas=True, owner=owner
    )
    await watcher.wait(job_id, settings.predict_wait_s)
    job = await run_in_threadpool(read_job, settings, job_id)
    if is_finished(job):
        return PredictOut(job=job, result=job.results.items[0])
    return JSONResponse(job.model_dump(mode="json"), 202, headers=job_headers(job))
