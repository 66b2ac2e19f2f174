"""Run the whole system on one machine: the gateway and one Celery worker, supervised together.

Both stop when either exits or on Ctrl-C. Settings come from `HWR_*` variables (jobs.settings).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from jobs.settings import ROOT, get_settings

STOP_GRACE_S = 15


def commands(host: str, port: int) -> list[list[str]]:
    queue = get_settings().job_queue
    return [
        [sys.executable, "-m", "celery", "-A", "worker.tasks", "worker", "-Q", queue, "-l", "info"],
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
         "--host", host, "--port", str(port)],
    ]  # fmt: skip


def supervise(processes: list[subprocess.Popen]) -> int:
    """Wait until one process exits or we are interrupted; then stop the others."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
    return max(process.returncode or 0 for process in processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    processes = [subprocess.Popen(command, cwd=ROOT) for command in commands(args.host, args.port)]
    print(f"serving on http://{args.host}:{args.port} (Ctrl-C stops gateway and worker)")
    sys.exit(supervise(processes))


if __name__ == "__main__":
    main()
