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
# ExifTool reads embeddedMetadata (a Debian package, not a Python one).
if ! command -v exiftool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends libimage-exiftool-perl; } >/dev/null
  else
    echo "scripts/test.sh: install exiftool (Debian/Ubuntu: libimage-exiftool-perl; macOS: brew install exiftool)" >&2
    exit 1
  fi
fi
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest -q "$@"
