"""The gateway killed and started again while clients poll their jobs and others upload:
every job a client was told about, or that a resent upload created, ends succeeded once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.faults.conftest import (
    FaultStack,
    PatientClient,
    assert_each_job_succeeded_once,
    job_ids,
    kill,
)

POLLERS = 4
LATE_UPLOADS = 2
JOB = 300


def test_polls_and_uploads_across_a_gateway_restart_lose_nothing(
    fault_stack: FaultStack, scans: list[bytes]
):
    settings = fault_stack.settings
    before = job_ids(settings)
    clients = [PatientClient(fault_stack.base_url) for _ in range(POLLERS + LATE_UPLOADS)]
    polled = [client.submit(scans[:JOB]) for client in clients[:POLLERS]]

    def submit_and_wait(client: PatientClient) -> dict:
        return client.wait_until_finished(client.submit(scans[:JOB]))

    with ThreadPoolExecutor(POLLERS + LATE_UPLOADS) as pool:
        polls = [
            pool.submit(client.wait_until_finished, job_id)
            for client, job_id in zip(clients, polled, strict=False)
        ]
        PatientClient(fault_stack.base_url).wait_until_started(polled[0])
        kill(fault_stack.gateway)
        assert not all(poll.done() for poll in polls), "every job finished before the restart"
        late = [pool.submit(submit_and_wait, client) for client in clients[POLLERS:]]
        fault_stack.start_gateway()
        finished = [future.result() for future in polls + late]

    assert [job["status"] for job in finished] == ["succeeded"] * len(finished)
    assert_each_job_succeeded_once(settings, before, {job["id"]: JOB for job in finished})
    assert [client.server_errors() for client in clients] == [[]] * len(clients)
