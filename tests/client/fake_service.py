"""Just enough of the job API (docs/CONTRACT.md) to drive the client without a server.

A job finishes on its second poll; each image is predicted as the first letter of its file
name, and files named `bad*` fail, as the real service fails a file it cannot read.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from typing import Any

import httpx

Json = dict[str, Any]
FILENAME = re.compile(rb'name="files?"; filename="([^"]*)"')
MODELS = [{"name": "emnist47", "num_classes": 47, "labels": ["A"], "metrics": {"accuracy": 0.9}}]


class FakeService:
    """An httpx.MockTransport handler that records every request it answers.

    `refusals` are answered (or raised, for a transport error) first, in order, whatever was
    asked.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, list[str]] = {}
        self.polls: dict[str, int] = {}
        self.requests: list[httpx.Request] = []
        self.refusals: list[httpx.Response | httpx.TransportError] = []
        self.predict_answers_later = False

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.refusals:
            refusal = self.refusals.pop(0)
            if isinstance(refusal, httpx.TransportError):
                raise refusal
            return refusal
        parts = request.url.path.removeprefix("/api/v1/").split("/")
        if request.method == "POST" and parts in (["jobs"], ["predict"]):
            return self._create(request, parts[0])
        if request.method == "GET" and parts == ["models"]:
            return httpx.Response(200, json=MODELS)
        if parts[0] == "jobs" and len(parts) > 1 and parts[1] not in self.jobs:
            return httpx.Response(404, json={"detail": "job not found"})
        if request.method == "GET" and len(parts) == 2:
            return self._poll(parts[1], request.url.params)
        if request.method == "GET" and parts[2:] == ["results.csv"]:
            return httpx.Response(200, text=self._csv(parts[1]))
        if request.method == "POST" and parts[2:] == ["cancel"]:
            return self._cancel(parts[1])
        if request.method == "DELETE":
            return self._delete(parts[1])
        return httpx.Response(404, json={"detail": "Not Found"})

    def job(self, job_id: str, offset: int = 0, limit: int = 100) -> Json:
        names = self.jobs[job_id]
        finished = self.polls[job_id] >= 2
        items = [self._item(index, name, finished) for index, name in enumerate(names)]
        failed = sum(item["status"] == "failed" for item in items)
        return {
            "id": job_id,
            "status": "succeeded" if finished else "running",
            "model": "emnist47",
            "progress": {
                "total": len(names),
                "done": len(names) if finished else 0,
                "failed": failed,
            },
            "results": {
                "offset": offset,
                "limit": limit,
                "total": len(items),
                "items": items[offset : offset + limit],
            },
        }

    def _create(self, request: httpx.Request, route: str) -> httpx.Response:
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = [name.decode() for name in FILENAME.findall(request.content)]
        self.polls[job_id] = 0
        if route == "predict" and not self.predict_answers_later:
            self.polls[job_id] = 2
            job = self.job(job_id)
            return httpx.Response(200, json={"job": job, "result": job["results"]["items"][0]})
        return httpx.Response(202, json=self.job(job_id), headers={"Location": f"/{job_id}"})

    def _poll(self, job_id: str, params: httpx.QueryParams) -> httpx.Response:
        self.polls[job_id] += 1
        job = self.job(job_id, int(params.get("offset", 0)), int(params.get("limit", 100)))
        headers = {} if job["status"] == "succeeded" else {"Retry-After": "0"}
        return httpx.Response(200, json=job, headers=headers)

    def _csv(self, job_id: str) -> str:
        out = io.StringIO()
        columns = ["index", "filename", "status", "prediction", "confidence", "error"]
        writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.job(job_id)["results"]["items"])
        return out.getvalue()

    def _cancel(self, job_id: str) -> httpx.Response:
        if self.polls[job_id] >= 2:
            return httpx.Response(409, json={"detail": "The job already succeeded."})
        return httpx.Response(200, json={**self.job(job_id), "status": "canceled"})

    def _delete(self, job_id: str) -> httpx.Response:
        if self.polls[job_id] >= 2:
            del self.jobs[job_id]
            return httpx.Response(204)
        return self._cancel(job_id)

    @staticmethod
    def _item(index: int, name: str, finished: bool) -> Json:
        base = name.rsplit("/", 1)[-1]
        failed = finished and base.startswith("bad")
        return {
            "index": index,
            "filename": name,
            "status": ("failed" if failed else "succeeded") if finished else "pending",
            "prediction": base[0].upper() if finished and not failed else None,
            "confidence": 0.5 if finished and not failed else None,
            "top5": [],
            "error": "not an image" if failed else None,
            "model_input": None,
        }
