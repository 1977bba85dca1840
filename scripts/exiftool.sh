# Sourced by scripts/test.sh and scripts/demo.sh: ExifTool reads embeddedMetadata (a Debian
# package, not a Python one). Installs it with apt when missing and running as root;
# otherwise prints one line saying how, and returns 1.
need_exiftool() {
  command -v exiftool >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends libimage-exiftool-perl; } >/dev/null
    command -v exiftool >/dev/null && return 0
  fi
  echo "$1: install exiftool (Debian/Ubuntu: apt-get install libimage-exiftool-perl; macOS: brew install exiftool)$2" >&2
  return 1
}
