#!/usr/bin/env bash
# Sets everything up and runs the whole test suite, lint and type checks included.
# DATABASE_URL=postgres://... runs it against PostgreSQL (the PostgreSQL-only tests too).
source "$(dirname "$0")/setup.sh"
bash scripts/system-deps.sh
export DEBUG=1
# The suite sets what it needs: an ENV_FILE exported in the caller's shell must not leak in.
export ENV_FILE=
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy .
.venv/bin/pytest "$@"
