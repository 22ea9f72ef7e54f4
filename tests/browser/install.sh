#!/usr/bin/env bash
# Installs what the console's browser tests (tests/api/console.rs → tests/browser/console.py)
# need: Debian's Chromium (package chromium, /usr/bin/chromium) and, from PyPI, Playwright
# for Python and axe-core, pinned in requirements.txt. Playwright is pointed at the system
# Chromium, so it downloads no browser. Idempotent; run as root (apt-get).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${MAILGATE_TEST_PYTHON:-python3}"

if ! [ -x /usr/bin/chromium ]; then
  echo "installing chromium from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

bash "$here/../pip-pinned.sh" "$here/requirements.txt"

/usr/bin/chromium --version 2>/dev/null | head -n1
"$PYTHON" -c 'from importlib.metadata import version; print("playwright", version("playwright"), "| axe-playwright-python", version("axe-playwright-python"))'
