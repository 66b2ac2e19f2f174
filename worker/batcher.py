"""Coalesces single images from many task threads into one forward pass.

A batch takes whatever is queued the moment the model is free, so a lone image never waits and
images arriving during a forward pass form the next one. Only while clients are evidently
drawing at once (this batch or one in the last second had company) does a batch wait, up to
`max_wait_s`, to fill further.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from ml.predictor import Prediction, Predictor
from ml.preprocess import ModelInput

logger = logging.getLogger(__name__)

Request = tuple[ModelInput, "Future[Prediction]"]

# How long after a batch with company traffic counts as concurrent: longer than a client's round
# trip, so the first image of each burst of concurrent clients waits for the rest of the burst.
CONCURRENCY_MEMORY_S = 1.0


class Coalescer:
    """A daemon thread that owns the forward passes for one model's single-image requests."""

    def __init__(
        self,
        predictor: Predictor,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int], None],
    ) -> None:
        self._predictor = predictor
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queued: list[Request] = []
        self._changed = threading.Condition()
        self._concurrent_until = 0.0
        threading.Thread(target=self._serve, name="coalescer", daemon=True).start()

    def predict(self, model_input: ModelInput) -> Prediction:
        """Top-5 for one input; blocks until its batch has run."""
        future: Future[Prediction] = Future()
        with self._changed:
            self._queued.append((model_input, future))
            self._changed.notify()
        return future.result()

    def _collect(self) -> list[Request]:
        """What is queued, up to `max_batch`; waits to fill only under concurrent traffic."""
        with self._changed:
            self._changed.wait_for(lambda: self._queued)
            deadline = time.monotonic() + self._max_wait_s
            concurrent = len(self._queued) > 1 or time.monotonic() < self._concurrent_until
            while concurrent and len(self._queued) < self._max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._changed.wait(remaining):
                    break
            batch = self._queued[: self._max_batch]
            del self._queued[: self._max_batch]
        if len(batch) > 1:
            self._concurrent_until = time.monotonic() + CONCURRENCY_MEMORY_S
        return batch

    def _serve(self) -> None:
        while True:
            batch = self._collect()
            try:
                predictions = self._predictor.predict_inputs([x for x, _ in batch])
            except Exception as error:  # noqa: BLE001 - handed to every waiting caller
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), prediction in zip(batch, predictions, strict=True):
                future.set_result(prediction)
            try:
                self._on_batch(len(batch))
            except Exception:
                logger.exception("could not record a batch of %d", len(batch))
