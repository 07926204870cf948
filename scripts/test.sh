#!/usr/bin/env bash
# Set up PostgreSQL and Chromium (Debian packages, for the production-topology and browser
# tests) and a virtual environment (all idempotent), then run ruff and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-postgres.sh
bash scripts/install-chromium.sh
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
