#!/usr/bin/env bash
# Set up a virtual environment (idempotent) and run the main job on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/python -m flow_assets.demo "$@"
