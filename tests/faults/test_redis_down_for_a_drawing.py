"""A drawing sent while Redis is down: the canvas queue cannot take it, so the gateway stores it
as a job (its task cannot be sent either), and the sweep sends it once Redis is back."""

from __future__ import annotations

import time

from tests.faults.conftest import FaultStack, PatientClient, assert_each_job_succeeded_once, job_ids


def test_a_drawing_sent_while_redis_is_down_is_kept_and_read_later(
    fault_stack: FaultStack, scans: list[bytes]
):
    settings = fault_stack.settings
    before = job_ids(settings)
    client = PatientClient(fault_stack.base_url)
    fault_stack.redis.stop()
    started = time.monotonic()
    response = client.request("POST", "/api/v1/predict", files={"file": ("c.png", scans[0])})
    assert response.status_code == 202, response.text
    # Redis refusing connections is found at once, not after a wait or retries with backoff.
    assert time.monotonic() - started < settings.predict_wait_s
    job_id = response.json()["id"]
    fault_stack.redis.start()

    assert client.wait_until_finished(job_id)["status"] == "succeeded"
    assert_each_job_succeeded_once(settings, before, {job_id: 1})
    assert client.server_errors() == []
