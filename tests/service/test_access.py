"""Access to the API: optional keys with per-key jobs, rate limits, CORS and security headers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.access import key_digest
from api.main import create_app
from jobs.settings import Settings
from tests.service.conftest import png_bytes

JOBS = "/api/v1/jobs"
ALICE, BOB = "alice-secret-key", "bob-secret-key"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def one_image(seed: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6 + seed % 10 : 22, 12:16] = 255
    return [("files", (f"bar{seed}.png", png_bytes(pixels), "image/png"))]


@pytest.fixture
def app_with(settings: Settings, worker: subprocess.Popen) -> Iterator:
    """A gateway on the shared database and worker, with some settings changed."""
    clients: list[TestClient] = []

    def make(**changes: object) -> TestClient:
        client = TestClient(create_app(settings.model_copy(update=changes)))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_without_a_known_key_the_api_answers_401_but_pages_do_not(app_with):
    client = app_with(api_key_hashes=[key_digest(ALICE)])
    for headers in ({}, bearer("not-a-key"), {"Authorization": ALICE}):
        response = client.get("/api/v1/models", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in response.json()["detail"]
    assert client.get("/api/v1/models", headers=bearer(ALICE)).status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/healthz").status_code == 200


def test_a_job_is_visible_only_to_the_key_that_created_it(app_with, settings: Settings):
    client = app_with(api_key_hashes=[key_digest(ALICE), key_digest(BOB)])
    created = client.post(JOBS, files=one_image(1), headers=bearer(ALICE))
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    for method, path in (
        ("GET", f"{JOBS}/{job_id}"),
        ("GET", f"{JOBS}/{job_id}/results.csv"),
        ("POST", f"{JOBS}/{job_id}/cancel"),
        ("DELETE", f"{JOBS}/{job_id}"),
    ):
        assert client.request(method, path, headers=bearer(BOB)).status_code == 404
    assert client.get(f"{JOBS}/{job_id}", headers=bearer(ALICE)).status_code == 200

    database = settings.database_url.replace("+psycopg", "")
    with psycopg.connect(database) as connection:
        owner = connection.execute("SELECT owner FROM jobs WHERE id = %s", (job_id,)).fetchone()
        stored = connection.execute("SELECT count(*) FROM jobs WHERE owner = %s", (ALICE,))
        assert owner == (key_digest(ALICE),)
        assert stored.fetchone() == (0,)


def test_idempotency_keys_of_different_api_keys_do_not_collide(app_with):
    client = app_with(api_key_hashes=[key_digest(ALICE), key_digest(BOB)])
    jobs = []
    for key, seed in ((ALICE, 2), (BOB, 3)):
        headers = {**bearer(key), "Idempotency-Key": "shared-key"}
        response = client.post(JOBS, files=one_image(seed), headers=headers)
        assert response.status_code == 202, response.text
        jobs.append(response.json()["id"])
    assert jobs[0] != jobs[1]


def test_the_rate_limit_answers_429_with_retry_after_per_client(app_with):
    client = app_with(api_key_hashes=[key_digest(ALICE), key_digest(BOB)], rate_limit="3/minute")
    answers = [client.get("/api/v1/models", headers=bearer(ALICE)) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert "Too many requests" in answers[-1].json()["detail"]
    assert client.get("/api/v1/models", headers=bearer(BOB)).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_cors_is_closed_unless_an_origin_is_listed(app_with):
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    closed = app_with()
    assert "access-control-allow-origin" not in closed.options(JOBS, headers=preflight).headers
    response = closed.get("/api/v1/models", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers

    opened = app_with(cors_origins=["https://app.example"], api_key_hashes=[key_digest(ALICE)])
    response = opened.options(JOBS, headers=preflight)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    other = opened.options(JOBS, headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_pages_and_answers_carry_security_headers(app_with):
    client = app_with()
    for path in ("/", "/batch", "/api/v1/models", "/static/js/api.js"):
        headers = client.get(path).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'self' rules
