"""JobsClient against a fake service: uploads, paging, polling and the sentences errors carry."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from client.api import ClientError, JobsClient, ServerUnreachable, WaitTimeout
from tests.client.conftest import FAKE_URL
from tests.client.fake_service import FakeService


def test_unreachable_server_is_named_in_the_error(closed_url: str) -> None:
    with JobsClient(closed_url) as client, pytest.raises(ServerUnreachable) as caught:
        client.models()

    assert caught.value.message.startswith(f"cannot reach server at {closed_url} (")
    assert caught.value.status_code is None


def test_submit_streams_files_with_their_names_model_and_key(
    api: JobsClient, service: FakeService, image_folder: Path
) -> None:
    progress: list[tuple[int, int]] = []

    job = api.submit([image_folder], "emnist62", "key-1", lambda *sent: progress.append(sent))

    request = service.requests[-1]
    assert job["status"] == "running" and job["progress"]["total"] == 3
    assert service.jobs[job["id"]] == ["a.png", "c.zip", "more/b.JPG"]
    assert request.headers["Idempotency-Key"] == "key-1"
    assert int(request.headers["Content-Length"]) == len(request.content)
    assert b'name="model"\r\n\r\nemnist62' in request.content
    total = sum(f.stat().st_size for f in image_folder.rglob("*.*") if f.suffix != ".txt")
    assert progress[-1] == (total, total)
    assert [sent for sent, _ in progress] == sorted(sent for sent, _ in progress)


def test_api_key_is_sent_as_bearer_token(service: FakeService) -> None:
    with JobsClient(FAKE_URL, api_key="s3cret", transport=service.transport()) as client:
        client.models()

    assert service.requests[-1].headers["Authorization"] == "Bearer s3cret"


def test_no_api_key_sends_no_authorization(api: JobsClient, service: FakeService) -> None:
    api.models()

    assert "Authorization" not in service.requests[-1].headers


def test_iter_results_follows_every_page(api: JobsClient, service: FakeService) -> None:
    service.jobs["j"] = [f"{letter}.png" for letter in "abcdefg"]
    service.polls["j"] = 2

    items = list(api.iter_results("j", page_size=3))

    assert [item["filename"] for item in items] == [f"{letter}.png" for letter in "abcdefg"]
    assert [r.url.params["offset"] for r in service.requests] == ["0", "3", "6"]


def test_wait_reports_progress_until_finished(api: JobsClient, service: FakeService) -> None:
    service.jobs["j"], service.polls["j"] = ["a.png"], 0
    seen: list[str] = []

    job = api.wait("j", lambda polled: seen.append(polled["status"]))

    assert job["status"] == "succeeded"
    assert seen == ["running", "succeeded"]


def test_wait_sits_out_a_busy_server(api: JobsClient, service: FakeService) -> None:
    service.jobs["j"], service.polls["j"] = ["a.png"], 1
    service.refusals.append(
        httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "0"})
    )

    assert api.wait("j")["status"] == "succeeded"


def test_wait_sits_out_a_restart_behind_a_proxy(api: JobsClient, service: FakeService) -> None:
    service.jobs["j"], service.polls["j"] = ["a.png"], 1
    service.refusals += [
        httpx.ConnectError("connection refused"),
        httpx.Response(502, text="<html>Bad Gateway</html>"),
    ]

    assert api.wait("j")["status"] == "succeeded"
    assert len(service.requests) == 3


def test_wait_stops_when_the_job_is_gone(api: JobsClient, service: FakeService) -> None:
    with pytest.raises(ClientError, match="job not found"):
        api.wait("gone")


def test_wait_gives_up_at_its_timeout(api: JobsClient, service: FakeService) -> None:
    service.jobs["j"], service.polls["j"] = ["a.png"], 0

    with pytest.raises(WaitTimeout, match="job j is still running after 0 s"):
        api.wait("j", timeout=0)


def test_server_detail_becomes_the_message(api: JobsClient, service: FakeService) -> None:
    with pytest.raises(ClientError) as caught:
        api.get_job("missing")

    assert (caught.value.message, caught.value.status_code) == ("job not found", 404)


def test_validation_problems_are_flattened(api: JobsClient, service: FakeService) -> None:
    problems = [{"loc": ["body", "files"], "msg": "Field required", "type": "missing"}]
    service.refusals.append(httpx.Response(422, json={"detail": problems}))

    with pytest.raises(ClientError, match=r"^body\.files: Field required$"):
        api.models()


def test_an_answer_without_detail_gives_the_status_line(
    api: JobsClient, service: FakeService
) -> None:
    service.refusals.append(httpx.Response(502, text="<html>proxy error</html>"))

    with pytest.raises(ClientError, match=r"^server answered 502 Bad Gateway$"):
        api.models()


@pytest.mark.parametrize("answers_later", [False, True], ids=["at-once", "after-202"])
def test_predict_returns_the_result_item(
    api: JobsClient, service: FakeService, image_folder: Path, answers_later: bool
) -> None:
    service.predict_answers_later = answers_later

    item = api.predict(image_folder / "a.png")

    assert (item["filename"], item["prediction"]) == ("a.png", "A")


def test_cancel_gives_the_canceled_job_and_leaves_a_finished_one(
    api: JobsClient, service: FakeService
) -> None:
    service.jobs["running"], service.polls["running"] = ["a.png"], 0
    service.jobs["done"], service.polls["done"] = ["a.png"], 2

    assert api.cancel("running")["status"] == "canceled"
    with pytest.raises(ClientError, match="already succeeded") as refused:
        api.cancel("done")
    assert refused.value.status_code == 409
    assert "done" in service.jobs


def test_delete_removes_a_finished_job_and_cancels_an_unfinished_one(
    api: JobsClient, service: FakeService
) -> None:
    service.jobs["running"], service.polls["running"] = ["a.png"], 0
    service.jobs["done"], service.polls["done"] = ["a.png"], 2

    assert api.delete("running")["status"] == "canceled"
    assert api.delete("done") is None
    assert "done" not in service.jobs
