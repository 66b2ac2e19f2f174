"""The benchmark smoke test runs on the service tests' small untrained models (no accuracy)."""

from tests.service.conftest import models_dir  # noqa: F401 - shared fixture, one definition
