#!/usr/bin/env bash
# Creates .venv and installs the project into it; `install.sh dev` adds the test tools.
# Idempotent, so run.sh and test.sh can both start with it.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:+[$1]}
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${extras}"
