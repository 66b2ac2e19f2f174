#!/usr/bin/env bash
# One command for a fresh machine: install into .venv, migrate, then start the gateway and a
# worker at http://localhost:8000 with SQLite and a filesystem broker under ./var/ (no servers).
# Settings: HWR_* environment variables (see README); extra arguments go to scripts/launch.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/alembic upgrade head
exec .venv/bin/python scripts/launch.py "$@"
