"""The models of this worker process: each loaded once, on first need or when the process starts."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from jobs import store
from jobs.db import session_scope
from jobs.settings import get_settings
from ml import Predictor, load_model
from ml.artifact import ModelArtifactError
from ml.predictor import Prediction
from worker import metrics
from worker.batcher import Coalescer

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_predictors: dict[str, Predictor] = {}
_coalescers: dict[str, Coalescer] = {}


class MeasuredPredictor(Predictor):
    """A predictor whose every forward pass is counted in the worker's metrics."""

    def predict(
        self, inputs: np.ndarray, k: int = 5, pen_lines: np.ndarray | None = None
    ) -> list[Prediction]:
        started = time.perf_counter()
        predictions = super().predict(inputs, k, pen_lines)
        metrics.observe_forward_pass(self.spec.name, len(inputs), time.perf_counter() - started)
        return predictions


def predictor(model: str) -> Predictor:
    """The model's predictor, with torch threads and device set from the settings."""
    with _lock:
        if model not in _predictors:
            settings = get_settings()
            started = time.perf_counter()
            _predictors[model] = MeasuredPredictor(
                load_model(settings.models_dir / model),
                device=settings.device or None,
                threads=settings.torch_threads,
                chunk_size=settings.inference_batch_size,
                precision=settings.inference_precision,
            )
            seconds = time.perf_counter() - started
            metrics.MODEL_LOAD_SECONDS.labels(model).set(seconds)
            logger.info("model %s loaded", model, extra={"seconds": round(seconds, 3)})
        return _predictors[model]


def coalescer(model: str) -> Coalescer:
    """The process-wide coalescer that batches this model's canvas images."""
    with _lock:
        if model not in _coalescers:
            settings = get_settings()
            _coalescers[model] = Coalescer(
                predictor(model),
                max_batch=settings.coalesce_max_batch,
                max_wait_s=settings.coalesce_max_wait_ms / 1000,
                on_batch=lambda size: record_batch(size, coalesced=True),
            )
        return _coalescers[model]


def record_batch(size: int, coalesced: bool) -> None:
    with session_scope(get_settings().database_url) as session:
        store.record_batch(session, size, coalesced)


def preload() -> None:
    """Load every configured model now, so the first request does not pay for it."""
    for model in get_settings().model_names:
        try:
            coalescer(model)
        except ModelArtifactError as error:
            logger.warning("model %s not loaded: %s", model, error)
