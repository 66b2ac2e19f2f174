#!/usr/bin/env bash
# The test suite, from a fresh machine: installs everything, starts the local services, runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
bash scripts/services.sh
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
