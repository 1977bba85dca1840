#!/usr/bin/env bash
# Set up a virtual environment (.venv) with every CPU extra and run the test suite.
# Needs: python3 >= 3.11, and Redis (127.0.0.1:6379, or redis-server on PATH — the
# tests start their own; or EXTWORKER_TEST_REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EXTWORKER_VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip -q --disable-pip-version-check "$@" 2>&1 \
          | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
# torch first, pinned: the `vision` extra's range is satisfied by it, so no resolver
# ever reaches for a newer (multi-GB CUDA) build.
pip install "torch==2.13.0"
pip install -e ".[all]"
# ExifTool reads embeddedMetadata: the metadata tests need it.
. scripts/exiftool.sh
need_exiftool scripts/test.sh "" || exit 1
# The console's browser tests: Playwright (the test extra) driving Debian's Chromium.
. scripts/browser.sh
need_chromium scripts/test.sh || exit 1
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest -q "$@"
