#!/usr/bin/env bash
# Set up extworker with remove-bg and run it on a sample photo — no Redis needed.
# Result: .data/demo/astronaut.out.png (the cutout) and the file object on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EXTWORKER_VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip -q --disable-pip-version-check install -e ".[bg]" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
export EXTWORKER_DATA_DIR="${EXTWORKER_DATA_DIR:-.data/demo}"
export EXTWORKER_MODELS_DIR="${EXTWORKER_MODELS_DIR:-.data/models}"
mkdir -p "$EXTWORKER_DATA_DIR"
"$VENV/bin/extworker" models pull u2netp >/dev/null
"$VENV/bin/python" -c "import skimage.data, PIL.Image as I; \
I.fromarray(skimage.data.astronaut()).save('$EXTWORKER_DATA_DIR/astronaut.jpg', quality=92)"
DEFAULT='[{"name": "remove-bg", "options": {"add_shadow": true}}]'
EXTENSIONS="${1:-$DEFAULT}"
echo "extworker: a first run also compiles rembg's numba kernels, once (about a minute)" >&2
exec "$VENV/bin/extworker" apply "$EXTWORKER_DATA_DIR/astronaut.jpg" \
  --extensions "$EXTENSIONS" -o "$EXTWORKER_DATA_DIR/astronaut.out.png"
