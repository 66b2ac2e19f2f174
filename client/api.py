"""JobsClient: the job service's HTTP API as Python calls, with the server's own error messages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from client.paths import Upload, expand_paths
from client.upload import ProgressFile

DEFAULT_URL = "http://localhost:8000"
API_PREFIX = "/api/v1"
FINISHED = frozenset({"succeeded", "failed", "canceled"})
FIRST_POLL_S = 0.2
POLL_BACKOFF = 1.5
LONGEST_POLL_S = 3.0
# How long `predict` follows a drawing's job when the server answered before it was done.
PREDICT_WAIT_S = 120.0

Json = dict[str, Any]


class ClientError(Exception):
    """A sentence fit to show a user; `status_code` is set when the server answered with one."""

    def __init__(
        self, message: str, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class ServerUnreachable(ClientError):
    """Nothing answered at the URL, so the caller can tell a wrong address from a refusal."""


class WaitTimeout(ClientError):
    """The job was still unfinished when the caller stopped waiting; it goes on on the server."""


class JobsClient:
    """One connection pool to the service; use it as a context manager or call `close`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(
        self,
        paths: Iterable[Path | str | Upload],
        model: str | None = None,
        idempotency_key: str | None = None,
        on_upload_progress: Callable[[int, int], None] | None = None,
    ) -> Json:
        """Upload images and zips (folders are walked) as one job; returns the queued job.

        `on_upload_progress(sent, total)` counts file bytes as they are streamed to the server.
        Raises `client.paths.PathError` before sending anything when a path is unusable.
        """
        uploads = expand_paths(paths)
        sent = 0

        def count(size: int) -> None:
            nonlocal sent
            sent += size
            if on_upload_progress is not None:
                on_upload_progress(sent, total)

        files = [ProgressFile(upload.path, count) for upload in uploads]
        total = sum(file.size for file in files)
        try:
            response = self._request(
                "POST",
                "/jobs",
                files=[("files", (u.name, f)) for u, f in zip(uploads, files, strict=True)],
                data={"model": model} if model else {},
                headers={"Idempotency-Key": idempotency_key} if idempotency_key else {},
            )
        finally:
            for file in files:
                file.close()
        return response.json()

    def get_job(self, job_id: str, offset: int = 0, limit: int = 100) -> Json:
        """The job with one page of its results."""
        return self._fetch_job(job_id, offset, limit)[0]

    def iter_results(self, job_id: str, page_size: int = 100) -> Iterator[Json]:
        """Every result item of the job in index order, fetched a page at a time."""
        offset = 0
        while True:
            page = self.get_job(job_id, offset, page_size)["results"]
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    def wait(
        self,
        job_id: str,
        on_progress: Callable[[Json], None] | None = None,
        timeout: float | None = None,
    ) -> Json:
        """Poll until the job finishes and return it (its results hold the first item only).

        Polls back off from FIRST_POLL_S to LONGEST_POLL_S and never come sooner than the server's
        Retry-After; a busy or restarting server (no answer, 429, 5xx) is waited out, up to the
        timeout, rather than reported: the job goes on meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = FIRST_POLL_S
        status = "unknown"
        while True:
            try:
                job, retry_after = self._fetch_job(job_id, 0, 1)
            except ClientError as error:
                if not _passing(error):
                    raise
                retry_after = error.retry_after
            else:
                status = job["status"]
                if on_progress is not None:
                    on_progress(job)
                if status in FINISHED:
                    return job
            pause = max(delay, retry_after or 0.0)
            delay = min(delay * POLL_BACKOFF, LONGEST_POLL_S)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"job {job_id} is still {status} after {timeout:g} s")
                pause = min(pause, left)
            time.sleep(pause)

    def results_csv(self, job_id: str) -> str:
        """The server's CSV of all results (index,filename,status,prediction,confidence,error)."""
        return self._request("GET", f"/jobs/{job_id}/results.csv").text

    def cancel(self, job_id: str) -> Json:
        """Cancel an unfinished job and return it; a finished job is left as it is (ClientError,
        status 409), so a cancel that crosses the job's end never costs its results."""
        return self._request("POST", f"/jobs/{job_id}/cancel").json()

    def delete(self, job_id: str) -> Json | None:
        """Delete a finished job and its results (None); an unfinished one is canceled instead
        (returned), and a second call deletes it."""
        response = self._request("DELETE", f"/jobs/{job_id}")
        return None if response.status_code == 204 else response.json()

    def models(self) -> list[Json]:
        """The models the server offers, with their labels and evaluation metrics."""
        return self._request("GET", "/models").json()

    def predict(
        self, path: Path | str, model: str | None = None, timeout: float | None = PREDICT_WAIT_S
    ) -> Json:
        """One image's result item; when the server answers before it is done, follows the job
        for up to `timeout` seconds (None: for as long as it takes)."""
        path = Path(path)
        with path.open("rb") as image:
            response = self._request(
                "POST",
                "/predict",
                files={"file": (path.name, image)},
                data={"model": model} if model else {},
            )
        body = response.json()
        if response.status_code != 202:
            return body["result"]
        job = self.wait(body["id"], timeout=timeout)
        items = job["results"]["items"]
        if not items:
            raise ClientError(f"job {job['id']} ended {job['status']} without a result")
        return items[0]

    def _fetch_job(self, job_id: str, offset: int, limit: int) -> tuple[Json, float | None]:
        """The job page and the server's Retry-After hint, which polling needs and callers don't."""
        response = self._request(
            "GET", f"/jobs/{job_id}", params={"offset": offset, "limit": limit}
        )
        return response.json(), _retry_after(response)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Every call goes through here so that every failure becomes one ClientError sentence."""
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise ServerUnreachable(
                f"cannot reach server at {self.base_url} ({_reason(error)})"
            ) from error
        except httpx.TimeoutException as error:
            raise ClientError(f"server at {self.base_url} did not answer in time") from error
        except httpx.TransportError as error:
            raise ClientError(f"connection to {self.base_url} failed ({_reason(error)})") from error
        if response.is_error:
            raise ClientError(_detail(response), response.status_code, _retry_after(response))
        return response


def _passing(error: ClientError) -> bool:
    """A failure a wait outlasts: no answer (a restart), too many requests, or a server or proxy
    in trouble; anything else (404: the job is gone) is final."""
    status = error.status_code
    return status is None or status == 429 or status >= 500


def _reason(error: Exception) -> str:
    """httpx errors sometimes carry no text; the class name is better than nothing."""
    return str(error) or type(error).__name__


def _detail(response: httpx.Response) -> str:
    """The server's `detail` sentence, FastAPI's validation list flattened, or the status line."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        detail = "; ".join(_validation_message(problem) for problem in detail)
    if detail:
        return str(detail)
    return f"server answered {response.status_code} {response.reason_phrase}"


def _validation_message(problem: Any) -> str:
    """One FastAPI validation problem, e.g. `body.files: Field required`."""
    if not isinstance(problem, dict):
        return str(problem)
    where = ".".join(str(part) for part in problem.get("loc", []))
    message = str(problem.get("msg", problem))
    return f"{where}: {message}" if where else message


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored as the service never sends it."""
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
