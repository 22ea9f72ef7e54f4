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

pinned_ok() {
  "$PYTHON" - "$here/requirements.txt" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if "==" in line:
        name, want = line.split("==")
        if version(name) != want:
            sys.exit(1)
PY
}

if ! pinned_ok; then
  echo "installing $(grep -v '^#' "$here/requirements.txt" | xargs) from PyPI"
  extra=()
  if "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    extra+=(--break-system-packages)
  fi
  PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$PYTHON" -m pip install --quiet "${extra[@]}" -r "$here/requirements.txt"
  pinned_ok
fi

/usr/bin/chromium --version 2>/dev/null | head -n1
"$PYTHON" -c 'from importlib.metadata import version; print("playwright", version("playwright"), "| axe-playwright-python", version("axe-playwright-python"))'
