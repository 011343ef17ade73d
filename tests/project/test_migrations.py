"""The models and their migrations agree: a model change without its migration fails here."""

from __future__ import annotations

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_makemigrations_check_finds_nothing_to_write():
    # Exits with status 1 (SystemExit) when a model differs from what its migrations build.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
