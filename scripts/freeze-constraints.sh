#!/usr/bin/env bash
# Rewrites constraints.txt from .venv: the exact versions a fresh clone then installs.
# Run it only after scripts/test.sh is green on SQLite and PostgreSQL (.ci/run) with them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
{
  echo "# The exact versions CI tested; scripts/setup.sh installs with 'pip install -c' this file."
  echo "# pyproject.toml says what the project accepts, this file what it was tested with."
  echo "# Made by scripts/freeze-constraints.sh (README.md, \"Dependencies\"); do not edit by hand."
  # --exclude-editable leaves out the project itself (installed with -e).
  .venv/bin/python -m pip freeze --exclude-editable --disable-pip-version-check
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages pinned"
