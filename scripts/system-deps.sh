#!/usr/bin/env bash
# Install the system packages the test suite needs (Debian/Ubuntu), only when missing.
# Called by `make test`; safe to run again. Needs root (or sudo) to install.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
# Browser tests of the web UI (tests/test_browser.py): Debian's Chromium, driven by
# Playwright, and a font with every Vietnamese glyph for the screenshots.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# Digitisation with an organisation key on a PKCS#11 token (tests/test_digitisation.py).
[ -f /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "system-deps: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "system-deps: need root to install ${need[*]}; install them and re-run" >&2
    exit 2
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
