"""CPU seconds each process spent in a phase: on 2 cores, who used them says what limits a figure.

Read from /proc (Linux); elsewhere the figures are absent rather than wrong.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process, all its threads; None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


@contextmanager
def cpu_used(pids: dict[str, int], into: dict[str, float]) -> Iterator[None]:
    """Fill `into` with each named process's CPU seconds during the block, and the wall time."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    yield
    into["wall"] = round(time.perf_counter() - started, 3)
    for name, pid in pids.items():
        after = cpu_seconds(pid)
        if after is not None and before[name] is not None:
            into[name] = round(after - before[name], 3)
