#!/usr/bin/env bash
# The test suite, from a fresh machine: installs everything, starts the local services, runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
bash scripts/services.sh
# Debian's Chromium, never a downloaded build; outside CI the browser tests skip without it.
if [ ! -x /usr/bin/chromium ] && ! { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; then
  if [ "${CI:-}" = "true" ]; then
    echo "could not install chromium" >&2
    exit 1
  fi
  echo "warning: chromium could not be installed; the browser tests will skip" >&2
fi
exec .venv/bin/python -m pytest "$@"
