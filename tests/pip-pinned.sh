#!/usr/bin/env bash
# Installs the pinned PyPI packages of a requirements file into the python3 on PATH (or
# $MAILGATE_TEST_PYTHON) unless exactly those versions are there already. Used by
# tests/mailservers/install.sh and tests/browser/install.sh.
# Usage: pip-pinned.sh REQUIREMENTS
set -euo pipefail
requirements=$1
PYTHON="${MAILGATE_TEST_PYTHON:-python3}"

pinned_ok() {
  "$PYTHON" - "$requirements" <<'PY' 2>/dev/null
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
  echo "installing $(grep -v '^#' "$requirements" | xargs) from PyPI"
  extra=()
  # A Debian-managed python3 (PEP 668) refuses plain pip installs.
  if "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    extra+=(--break-system-packages)
  fi
  PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$PYTHON" -m pip install --quiet "${extra[@]}" -r "$requirements"
  pinned_ok
fi
