# Sourced by serve.sh and test.sh: a virtualenv with the project installed at the versions of
# constraints.txt, made once per change of pyproject.toml or constraints.txt. Needs only
# python3 (3.11+).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "Installing the project and its dependencies into .venv (once per change of" \
    "pyproject.toml or constraints.txt)..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  # PYTHONWARNINGS: setuptools warns, on every editable install, about folders named like
  # the package in the working directory; that is how this project runs, on purpose.
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
