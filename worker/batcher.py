"""Coalesces single images from many task threads into one forward pass.

The first image to arrive opens a batch; it closes at `max_batch` images or `max_wait_s` after
that first arrival, whichever comes first, so a lone image waits at most `max_wait_s`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from ml.predictor import Prediction, Predictor

logger = logging.getLogger(__name__)

Request = tuple[np.ndarray, "Future[Prediction]"]


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
        self._requests: queue.Queue[Request] = queue.Queue()
        threading.Thread(target=self._serve, name="coalescer", daemon=True).start()

    def predict(self, model_input: np.ndarray) -> Prediction:
        """Top-5 for one (28, 28) input; blocks until its batch has run."""
        future: Future[Prediction] = Future()
        self._requests.put((model_input, future))
        return future.result()

    def _collect(self) -> list[Request]:
        batch = [self._requests.get()]
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._requests.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _serve(self) -> None:
        while True:
            batch = self._collect()
            try:
                predictions = self._predictor.predict(np.stack([x for x, _ in batch]))
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
