"""The targets of issue 6, checked against one run's results, as ratios where they can be.

A target whose figures the run did not measure (a client count left out) is `None`, not a pass.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

Check = tuple[str, str, Callable[[dict], float | None], Callable[[float, float], bool], float]


def _level(results: dict, clients: int) -> dict | None:
    return results["canvas"]["levels"].get(str(clients))


def _batch_vs_ceiling(results: dict) -> float:
    batch = results["batch_job"]
    ceiling = results["model_ceiling"]["models"][batch["model"]]["256"]
    return batch["service"]["characters_per_second"] / ceiling


def _batch_vs_naive(results: dict) -> float:
    batch = results["batch_job"]
    return batch["service"]["characters_per_second"] / batch["naive"]["characters_per_second"]


def _canvas(clients: int, figure: str) -> Callable[[dict], float | None]:
    def measured(results: dict) -> float | None:
        level = _level(results, clients)
        return level["service"][figure] if level else None

    return measured


def _throughput_vs_naive(clients: int) -> Callable[[dict], float | None]:
    def measured(results: dict) -> float | None:
        level = _level(results, clients)
        if not level or not level["naive"]["requests_per_second"]:
            return None
        return level["service"]["requests_per_second"] / level["naive"]["requests_per_second"]

    return measured


def _service_failures(results: dict) -> float:
    canvas = sum(
        level["service"]["errors"] + level["service"]["late"]
        for level in results["canvas"]["levels"].values()
    )
    return canvas + results["batch_job"]["service"]["errors"]


CHECKS: list[Check] = [
    ("batch job / model ceiling (batch 256)", ">= 0.5", _batch_vs_ceiling, operator.ge, 0.5),
    ("batch job / naive one request per image", ">= 5", _batch_vs_naive, operator.ge, 5.0),
    ("canvas p50 at 8 clients (ms)", "<= 30", _canvas(8, "p50_ms"), operator.le, 30.0),
    ("canvas p99 at 8 clients (ms)", "<= 150", _canvas(8, "p99_ms"), operator.le, 150.0),
    ("canvas req/s at 64 clients / naive", ">= 1", _throughput_vs_naive(64), operator.ge, 1.0),
    ("service errors + late answers, all phases", "== 0", _service_failures, operator.le, 0.0),
    ("mean batch size at 32 clients", "> 4", _canvas(32, "mean_batch_size"), operator.gt, 4.0),
]


def evaluate(results: dict) -> list[dict]:
    """One row per target: what it asks, what was measured, and whether that meets it."""
    rows = []
    for name, goal, measure, meets, bound in CHECKS:
        value = measure(results)
        rows.append(
            {
                "target": name,
                "goal": goal,
                "measured": None if value is None else round(value, 3),
                "passed": None if value is None else meets(value, bound),
            }
        )
    return rows
