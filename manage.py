#!/usr/bin/env python3
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    try:
        import django  # noqa: F401
    except ImportError:
        # `python manage.py ...` with a Python outside the project's virtualenv: use the
        # virtualenv the scripts made, when there is one.
        venv = Path(__file__).resolve().parent / ".venv"
        if (venv / "bin" / "python").exists() and Path(sys.prefix).resolve() != venv.resolve():
            os.execv(venv / "bin" / "python", [str(venv / "bin" / "python"), *sys.argv])
        sys.stderr.write(
            "Django is not installed for this Python: run `bash scripts/serve.sh` once (it "
            "makes .venv), then `source .venv/bin/activate`.\n"
        )
        raise SystemExit(1) from None
    from project.startup import run_command

    run_command(sys.argv)


if __name__ == "__main__":
    main()
