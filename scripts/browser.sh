# Sourced by scripts/test.sh: the console's tests drive Debian's Chromium with Playwright
# (Playwright's own browser download is not used). Installs it with apt when missing and
# running as root; otherwise prints one line saying how, and returns 1.
need_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/dev/null
    [ -x /usr/bin/chromium ] && return 0
  fi
  echo "$1: install Chromium at /usr/bin/chromium (Debian/Ubuntu: apt-get install chromium)" >&2
  return 1
}
