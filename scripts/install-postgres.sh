#!/usr/bin/env bash
# The production-topology tests (flow_assets_tests/test_production.py) run a throwaway
# PostgreSQL: install Debian's package when no initdb is found (on PATH or in the package's
# versioned bin folder). Idempotent: nothing happens once it is installed.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends postgresql
