#!/usr/bin/env bash
# The browser test (flow_assets_tests/test_browser.py) drives Debian's Chromium with Playwright
# from PyPI (never `playwright install`: no browser download). Install Debian's `chromium`
# package when /usr/bin/chromium is missing. Idempotent: nothing happens once it is installed.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
