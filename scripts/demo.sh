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
# ExifTool reads the photo's embeddedMetadata; without it the demo still runs, without that.
. scripts/exiftool.sh
need_exiftool scripts/demo.sh ", then embeddedMetadata is filled in" || true
export EXTWORKER_DATA_DIR="${EXTWORKER_DATA_DIR:-.data/demo}"
export EXTWORKER_MODELS_DIR="${EXTWORKER_MODELS_DIR:-.data/models}"
mkdir -p "$EXTWORKER_DATA_DIR"
"$VENV/bin/extworker" models pull u2netp >/dev/null
# scikit-image's astronaut (Eileen Collins; NASA, public domain), saved with that provenance in
# its EXIF so that the file object shows embeddedMetadata as ExifTool reads it.
"$VENV/bin/python" - "$EXTWORKER_DATA_DIR/astronaut.jpg" <<'PY'
import sys
import PIL.Image
import skimage.data
exif = PIL.Image.Exif()
exif[0x010E] = "Eileen Collins, NASA astronaut (scikit-image sample data)"  # ImageDescription
exif[0x013B] = "NASA"                                                      # Artist
exif[0x8298] = "Public domain"                                             # Copyright
PIL.Image.fromarray(skimage.data.astronaut()).save(sys.argv[1], quality=92, exif=exif)
PY
DEFAULT='[{"name": "remove-bg", "options": {"add_shadow": true}}]'
EXTENSIONS="${1:-$DEFAULT}"
echo "extworker: a first run also compiles rembg's numba kernels, once (about a minute)" >&2
exec "$VENV/bin/extworker" apply "$EXTWORKER_DATA_DIR/astronaut.jpg" \
  --extensions "$EXTENSIONS" -o "$EXTWORKER_DATA_DIR/astronaut.out.png"
