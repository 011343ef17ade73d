#!/usr/bin/env bash
# Installs the Debian packages some tests need, when they are missing:
#   chromium  - the browser Playwright drives in tests/e2e/test_admin_browser.py (Playwright's
#               own browser download is not used: it cannot be fetched here);
#   faketime  - runs a cluster with its clock ten minutes off in tests/e2e/test_faults.py, a
#               PostgreSQL-only test: needed only when DATABASE_URL is postgres://.
# Does nothing when what the run needs is there. Needs root (CI runs as root) or sudo.
# Call it (`bash scripts/system-deps.sh`) or source it; either way it leaves the shell as it was.
(
  set -euo pipefail
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  case "${DATABASE_URL:-}" in
    postgres://* | postgresql://*)
      [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] \
        || [ -e /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 ] || missing+=(faketime)
      ;;
  esac
  if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
  fi
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "scripts/system-deps.sh: missing Debian packages ${missing[*]}; install them as" \
        "root (apt-get install ${missing[*]})" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "Installing Debian packages for the tests: ${missing[*]}..."
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine's package lists may be missing or old: without an update apt may not
  # find the packages, or fetch versions that are gone.
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
)
