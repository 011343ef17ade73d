#!/usr/bin/env bash
# Installs Debian's chromium, which the browser tests (tests/e2e/test_admin_browser.py) drive
# through Playwright. Playwright's own browser download is not used: it cannot be fetched here.
# Does nothing when /usr/bin/chromium is already there. Needs root (CI runs as root) or sudo.
# Call it (`bash scripts/browser.sh`) or source it; either way it leaves the shell as it was.
(
  set -euo pipefail
  if [ -x /usr/bin/chromium ]; then
    exit 0
  fi
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "scripts/browser.sh: /usr/bin/chromium is missing; install the Debian package" \
        "'chromium' as root (apt-get install chromium)" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "Installing Debian's chromium for the browser tests..."
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine's package lists may be missing or old: without an update apt may not
  # find the package, or fetch versions that are gone.
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
  /usr/bin/chromium --version
)
