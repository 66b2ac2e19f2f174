"""Redis flushed and restarted while jobs wait in its queue: it keeps nothing on disk, so those
messages are gone, and the database-driven sweep enqueues every such job again."""

from __future__ import annotations

from tests.faults.conftest import (
    FaultStack,
    PatientClient,
    assert_each_job_succeeded_once,
    job_ids,
)

# As many large jobs as the worker has task threads keep it busy while the small ones queue.
SMALL_JOB = 20


def test_jobs_lost_with_the_queue_are_swept_back(fault_stack: FaultStack, scans: list[bytes]):
    settings = fault_stack.settings
    before = job_ids(settings)
    client = PatientClient(fault_stack.base_url)
    large = [client.submit(scans) for _ in range(settings.worker_concurrency)]
    client.wait_until_started(large[0])
    small = [client.submit(scans[:SMALL_JOB]) for _ in range(4)]

    broker = fault_stack.redis.client()
    assert broker.llen(settings.job_queue) > 0, "no job was waiting in the queue to be lost"
    broker.flushall()
    fault_stack.redis.stop()
    fault_stack.redis.start()

    for job_id in large + small:
        assert client.wait_until_finished(job_id)["status"] == "succeeded"
    accepted = {job_id: len(scans) for job_id in large} | {job_id: SMALL_JOB for job_id in small}
    assert_each_job_succeeded_once(settings, before, accepted)
    assert client.server_errors() == []
