"""Client for the handwriting job service: `JobsClient` for Python callers, `hwr` for terminals."""

from client.api import ClientError, JobsClient, ServerUnreachable, WaitTimeout

__all__ = ["ClientError", "JobsClient", "ServerUnreachable", "WaitTimeout"]
