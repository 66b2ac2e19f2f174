"""CPU seconds each part spent in a phase: on 2 cores, who used them says what limits a figure.

Parts are groups of processes found afresh at both ends of a phase (Postgres starts a backend
per connection), so a process that appears mid-phase counts from zero. Read from /proc (Linux);
elsewhere the figures are absent rather than wrong.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")

Finder = Callable[[], list[int]]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process, all its threads; None when it cannot be read."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def _command_lines() -> Iterator[tuple[int, str]]:
    for entry in PROC.glob("[0-9]*"):
        try:
            yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue


def these_processes(*pids: int) -> Finder:
    return lambda: list(pids)


def processes_matching(*words: str) -> Finder:
    """Processes whose command line holds every word: a database's backends, redis-server."""
    return lambda: [pid for pid, line in _command_lines() if all(w in line for w in words)]


def _sample(parts: dict[str, Finder]) -> dict[str, dict[int, float]]:
    samples = {}
    for name, find in parts.items():
        times = {pid: cpu_seconds(pid) for pid in find()}
        samples[name] = {pid: seconds for pid, seconds in times.items() if seconds is not None}
    return samples


@contextmanager
def cpu_used(parts: dict[str, Finder], into: dict[str, float]) -> Iterator[None]:
    """Fill `into` with each part's CPU seconds during the block, and the wall time."""
    before = _sample(parts)
    started = time.perf_counter()
    yield
    into["wall"] = round(time.perf_counter() - started, 3)
    for name, times in _sample(parts).items():
        if times:
            used = sum(seconds - before[name].get(pid, 0.0) for pid, seconds in times.items())
            into[name] = round(used, 3)
