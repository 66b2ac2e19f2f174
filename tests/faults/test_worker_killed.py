"""A worker SIGKILLed in the middle of a large job: once restarted, the job resumes and ends
with exactly one result per item."""

from __future__ import annotations

from jobs.settings import Settings
from tests.faults.conftest import (
    FaultStack,
    PatientClient,
    assert_each_job_succeeded_once,
    job_ids,
    kill,
    unfinished,
)


def test_a_job_cut_short_by_sigkill_resumes_on_the_restarted_worker(
    fault_stack: FaultStack, scans: list[bytes]
):
    settings: Settings = fault_stack.settings
    before = job_ids(settings)
    client = PatientClient(fault_stack.base_url)
    job_id = client.submit(scans)
    client.wait_until_started(job_id)

    kill(fault_stack.worker)
    assert unfinished(settings, job_id), "the job finished before the kill; make it larger"
    fault_stack.start_worker()

    assert client.wait_until_finished(job_id)["progress"] == {
        "total": len(scans), "done": len(scans), "failed": 0
    }  # fmt: skip
    assert_each_job_succeeded_once(settings, before, {job_id: len(scans)})
    assert client.server_errors() == []
