"""The canvas queue against the real worker process: drawings answered first and stored right
after, and a drawing nobody answers in time stored by its gateway as a job, once either way."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from api.canvas_answers import CanvasAnswers
from api.main import create_app
from api.routes.predict import store_unanswered
from api.submit import store_job
from api.uploads import Upload
from jobs import canvas_queue, store
from jobs.canvas_queue import Answer, Drawing
from jobs.db import session_scope
from jobs.queue import enqueue_job, make_celery
from jobs.schema import JobStatus, utcnow
from jobs.settings import Settings
from jobs.store import NewItem
from ml import Predictor, load_model
from ml.preprocess import read_model_input
from tests.service.conftest import wait_for

PREDICT = "/api/v1/predict"
MODELS = ("emnist47", "emnist62")


def drawing(data: bytes, answer_in_s: float = 5.0, model: str = "emnist47") -> Drawing:
    return Drawing(
        job_id=uuid.uuid4(),
        model=model,
        owner="",
        filename="canvas.png",
        data=data,
        request_hash="0" * 64,
        created_at=utcnow(),
        answer_by=time.time() + answer_in_s,
        reply_to="",
    )


def ask(settings: Settings, *sent: Drawing) -> list[Answer | None]:
    """`canvas_queue.ask` for each drawing at once, as a gateway runs it, on an event loop of its
    own (Playwright's sync API holds this thread's)."""

    async def asking() -> list[Answer | None]:
        client = canvas_queue.connect_async(settings)
        answers = CanvasAnswers(client, settings)
        reading = asyncio.create_task(answers.run())
        try:
            to_this_gateway = [replace(d, reply_to=answers.reply_to) for d in sent]
            return await asyncio.gather(
                *(answers.ask(d, canvas_queue.encode(d)) for d in to_this_gateway)
            )
        finally:
            reading.cancel()
            await client.aclose()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asking()).result()


def queued(settings: Settings, queue: str = "cpu") -> int:
    """Drawings still on the queue's list."""
    client = redis.Redis.from_url(settings.broker_url)
    return client.llen(canvas_queue.drawings_key(settings, queue))


def test_a_drawing_is_answered_once_stored_as_its_finished_job(
    worker: object, settings: Settings, emnist_pngs: list[bytes]
):
    sent = drawing(emnist_pngs[0])
    (answer,) = ask(settings, sent)
    assert answer is not None and answer.outcome.status == "succeeded"
    with session_scope(settings.database_url) as session:
        job = store.get_job(session, sent.job_id)
        assert job is not None and job.status == JobStatus.succeeded and job.for_canvas
        assert job.finished_at == answer.finished_at
        (row,) = store.results_page(session, sent.job_id, 0, 10)
        assert row.Result.prediction == answer.outcome.prediction
        assert row.Result.top5 == answer.outcome.top5


def test_predict_answers_what_the_stored_job_shows(client: TestClient, emnist_pngs: list[bytes]):
    answered = client.post(PREDICT, files={"file": ("c.png", emnist_pngs[1])})
    assert answered.status_code == 200, answered.text
    body = answered.json()
    stored = client.get(f"/api/v1/jobs/{body['job']['id']}")
    assert stored.status_code == 200 and stored.json() == body["job"]
    assert body["result"] == body["job"]["results"]["items"][0]


def test_a_drawing_past_its_answer_time_is_dropped_unread(
    worker: object, settings: Settings, emnist_pngs: list[bytes]
):
    stale = drawing(emnist_pngs[2], answer_in_s=-1)
    assert ask(settings.model_copy(update={"predict_wait_s": 0.5}), stale) == [None]
    assert queued(settings) == 0
    with session_scope(settings.database_url) as session:
        assert store.get_job(session, stale.job_id) is None


def test_a_drawing_for_a_model_the_worker_lacks_is_left_to_its_job(
    worker: object, settings: Settings, emnist_pngs: list[bytes]
):
    """Answered at once, and stored, as a failed job that says why."""
    sent = drawing(emnist_pngs[5], model="retired-model")
    (answer,) = ask(settings, sent)
    assert answer is not None and answer.job_status == JobStatus.failed
    assert answer.outcome.error == "Model 'retired-model' is not available on this worker."
    with session_scope(settings.database_url) as session:
        job = store.get_job(session, sent.job_id)
        assert job is not None and job.status == JobStatus.failed


def test_drawings_for_both_models_at_once_get_their_own_answers(
    worker: object, settings: Settings, emnist_pngs: list[bytes]
):
    sent = [drawing(emnist_pngs[i], model=("emnist47", "emnist62")[i % 2]) for i in range(10, 22)]
    answers = ask(settings, *sent)
    predictor = {
        name: Predictor(load_model(settings.models_dir / name), device="cpu", threads=1)
        for name in MODELS
    }
    for d, answer in zip(sent, answers, strict=True):
        assert answer is not None and answer.job_status == JobStatus.succeeded
        model_input = read_model_input(d.data, predictor[d.model].spec.input)
        expected = predictor[d.model].predict_inputs([model_input])[0]
        assert answer.outcome.prediction == expected[0][0], d.model
    assert queued(settings) == 0


def test_a_drawing_no_worker_answers_in_time_becomes_a_job(
    worker: object, settings: Settings, emnist_pngs: list[bytes]
):
    """No worker reads the gpu queue here: the gateway stops waiting, stores the drawing as a
    queued job and answers 202; sent to a worker, that job is read like any other."""
    unanswered = settings.model_copy(update={"job_queue": "gpu", "predict_wait_s": 0.3})
    with TestClient(create_app(unanswered)) as client:
        response = client.post(PREDICT, files={"file": ("c.png", emnist_pngs[3])})
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued" and job["progress"]["total"] == 1
        assert queued(settings, "gpu") == 0, "the gateway left its drawing on the list"
        enqueue_job(make_celery(settings), uuid.UUID(job["id"]), "cpu")
        finished = wait_for(client, job["id"])
    assert finished["status"] == "succeeded"
    assert finished["results"]["items"][0]["status"] == "succeeded"


def test_a_drawing_is_stored_once_whoever_stores_it_first(
    settings: Settings, emnist_pngs: list[bytes]
):
    sent = drawing(emnist_pngs[4])
    outcome = store.Outcome(index=0, status="succeeded", prediction="A", confidence=0.5)
    now = utcnow()
    answered = store.AnsweredDrawing(
        job_id=sent.job_id,
        job_status=JobStatus.succeeded,
        model=sent.model,
        owner="",
        filename=sent.filename,
        request_hash=sent.request_hash,
        created_at=now - timedelta(seconds=1),
        started_at=now,
        finished_at=now,
        outcome=outcome,
    )
    with session_scope(settings.database_url) as session:
        assert store.save_answered_drawings(session, []) == set()
        assert store.save_answered_drawings(session, [answered]) == {sent.job_id}
    with session_scope(settings.database_url) as session:
        assert store.save_answered_drawings(session, [answered]) == set()
    upload = Upload(items=[NewItem(sent.filename, sent.data)], digest=sent.request_hash)
    celery = make_celery(settings)
    with pytest.raises(IntegrityError):
        store_job(settings, celery, sent.model, upload, for_canvas=True, job_id=sent.job_id)
    store_unanswered(settings, celery, sent, upload)
    with session_scope(settings.database_url) as session:
        job = store.get_job(session, sent.job_id)
        assert job is not None and job.status == JobStatus.succeeded


def test_answers_go_only_to_lists_of_answers(settings: Settings):
    """A drawing's `reply_to` comes from Redis: a worker writes nowhere but to a gateway's list."""
    client = redis.Redis.from_url(settings.broker_url)
    outcome = store.Outcome(index=0, status="succeeded", prediction="A", confidence=0.5)
    answer = Answer(uuid.uuid4(), JobStatus.succeeded, utcnow(), utcnow(), outcome)
    gateway = canvas_queue.answers_key(settings, "a-gateway")
    elsewhere = f"{settings.broker_key_prefix}not-answers:{uuid.uuid4().hex}"
    canvas_queue.give(client, settings, [(gateway, answer), (elsewhere, answer)])
    try:
        assert client.llen(gateway) == 1 and not client.exists(elsewhere)
    finally:
        client.delete(gateway)
