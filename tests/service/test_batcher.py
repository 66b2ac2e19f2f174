"""The coalescer alone: concurrent canvas images share forward passes, a lone one is not held."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ml import Predictor, load_model
from ml.predictor import Prediction
from ml.preprocess import ModelInput
from tests.service.conftest import PEN_LINE_LABEL
from worker.batcher import Coalescer

MAX_WAIT_S = 0.05
SCHEDULING_SLACK_S = 0.1


@pytest.fixture
def predictor(models_dir: Path) -> Predictor:
    return Predictor(load_model(models_dir / "emnist47"), device="cpu", threads=1)


@pytest.fixture
def batch_sizes() -> list[int]:
    return []


@pytest.fixture
def coalescer(predictor: Predictor, batch_sizes: list[int]) -> Coalescer:
    return Coalescer(predictor, max_batch=64, max_wait_s=MAX_WAIT_S, on_batch=batch_sizes.append)


def labels(prediction: Prediction) -> list[str]:
    return [label for label, _ in prediction]


def test_concurrent_images_share_batches_and_get_their_own_answers(
    predictor: Predictor, coalescer: Coalescer, batch_sizes: list[int]
):
    inputs = np.random.default_rng(0).normal(size=(32, 28, 28)).astype(np.float32)
    pen_lines = np.arange(32) % 3 == 0

    def client(number: int) -> list[Prediction]:
        model_input = ModelInput(inputs[number], bool(pen_lines[number]))
        return [coalescer.predict(model_input) for _ in range(5)]

    with ThreadPoolExecutor(32) as clients:
        answers = list(clients.map(client, range(32)))
    truths = predictor.predict(inputs, pen_lines=pen_lines)
    assert {labels(truths[i])[0] for i in np.flatnonzero(pen_lines)} == {PEN_LINE_LABEL}
    for mine, truth in zip(answers, truths, strict=True):
        assert all(labels(answer) == labels(truth) for answer in mine)
    assert sum(batch_sizes) == 160
    assert sum(batch_sizes) / len(batch_sizes) > 4, batch_sizes


def test_a_lone_image_waits_at_most_the_max_wait(coalescer: Coalescer, batch_sizes: list[int]):
    blank = ModelInput(np.zeros((28, 28), np.float32), pen_line=False)
    coalescer.predict(blank)
    started = time.monotonic()
    coalescer.predict(blank)
    assert time.monotonic() - started < MAX_WAIT_S + SCHEDULING_SLACK_S
    assert batch_sizes == [1, 1]
