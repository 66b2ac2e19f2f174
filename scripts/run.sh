#!/usr/bin/env bash
# One command for a fresh machine: install into .venv, migrate, start gateway + worker at
# http://localhost:8000 with SQLite and a filesystem broker under ./var/ (no servers needed).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet -e .
mkdir -p var
.venv/bin/alembic upgrade head
exec .venv/bin/python scripts/launch.py "$@"
