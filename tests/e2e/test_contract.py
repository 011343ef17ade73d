"""The published contract is the real one: Schemathesis against a live server (issue 23).

Schemathesis reads `/api/schema/` from the running service, as a seller's or integrator's
tool would, and sends what it generates from it: valid requests (each must be accepted) and
invalid ones (each must be refused), through every phase: the schema's examples, coverage of
every bound and pattern, fuzzing, and stateful runs that follow the schema's links from the
webhook's answer to the refund and the reads. Every check is on: no 5xx, the status, content
type, headers and body of every answer as the schema declares them.

The server runs in production mode (DEBUG off) on the suite's database, PostgreSQL or
SQLite. Two runs: the fixed seed makes a failure reproducible; the other widens the search
over time with a random seed, or takes `CONTRACT_SEED` from the environment when it is set.
A failure prints the seed it ran with and the command that runs that seed again:

    CONTRACT_SEED=1494926629 DEBUG=1 ENV_FILE= \
        .venv/bin/pytest tests/e2e/test_contract.py -k second-seed

Examples per operation are bounded so both runs stay well under a minute per database.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import subprocess
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import VENV_BIN, Stack, free_port, wait_until

pytestmark = pytest.mark.e2e

FIXED_SEED = 23
MAX_EXAMPLES = 30


def second_seed() -> int:
    """CONTRACT_SEED when set (to run a failing seed again), else a fresh random one."""
    raw = os.environ.get("CONTRACT_SEED", "").strip()
    if not raw:
        return random.SystemRandom().randrange(1, 2**31)
    if not (raw.isascii() and raw.isdigit()) or not 0 <= int(raw) < 2**32:
        raise pytest.UsageError(
            f"CONTRACT_SEED={raw!r} must be a whole number from 0 to {2**32 - 1} "
            "(the seed a failed contract run printed)"
        )
    return int(raw)


# Valid data may meet a documented refusal that no schema can rule out: 422 is the reuse of
# an Idempotency-Key (or webhook-id) with another body, which generated bodies do at random;
# 404 a ticket id nobody stored; 409 the refund of a ticket a generated delivery canceled
# (one refund per ticket: docs/API.md); 413 a body over WEBHOOK_MAX_BODY_BYTES, a size in
# bytes no JSON Schema can bound (whitespace, fields not listed, escapes), so up to
# WEBHOOK_MAX_TICKETS schema-valid tickets can exceed it. 400, the validator's refusal, is not
# allowed: a body the schema allows and the validator refuses is the drift this test exists
# to catch.
#
# Invalid data must be refused: Schemathesis' own list of refusals, plus 413. Seed 2038463122
# sent 1,132,321 bytes with more than WEBHOOK_MAX_TICKETS tickets and no Idempotency-Key; the
# service refused it with 413 before reading a field (docs/SECURITY.md), which Schemathesis'
# default list does not count as a refusal (ST201). Seed 1494926629 sent a query string of
# 4,510 bytes (a list where `limit` is an integer); gunicorn refused the request line with
# 414 before the application read it, which the list did not count either.
NEGATIVE_DATA_REJECTION = [
    "400",
    "401",
    "403",
    "404",
    "405",
    "406",
    "409",
    "413",
    "414",
    "415",
    "422",
    "428",
    "429",
    "5xx",
]
CONFIG = f"""
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "404", "409", "413", "422"]

[checks.negative_data_rejection]
expected-statuses = {json.dumps(NEGATIVE_DATA_REJECTION)}
"""


@pytest.fixture
def service(stack: Stack) -> tuple[str, str]:
    """The web app in production mode, and a superuser's token for the staff API."""
    stack.manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
        DJANGO_SUPERUSER_PASSWORD=secrets.token_urlsafe(16),
    )
    token = stack.manage("api_token", "admin").stdout.strip()
    port = free_port()
    stack.start(
        "web",
        [
            str(VENV_BIN / "gunicorn"),
            "project.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
        ],
        DEBUG="0",
        ENV_FILE="",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        # Plain http on the loopback: no TLS in front of the test server.
        SECURE_SSL_REDIRECT="0",
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: requests.get(f"{url}/health", timeout=1).ok, timeout=30, what="gunicorn /health"
    )
    return url, token


def schemathesis(
    url: str, token: str, seed: int, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    return subprocess.run(
        [
            str(VENV_BIN / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{url}/api/schema/?format=json",
            # The schema view and the staff API need it; the seller's endpoints ignore it
            # while WEBHOOK_SECRET is unset.
            "--header",
            f"Authorization: Token {token}",
            "--checks",
            "all",
            "--mode",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(seed),
            "--generation-database",
            "none",
            # A limit of the generator, not a difference: some seeds (364649627 on SQLite) draw
            # webhook bodies the schema's patterns mostly filter out, and Hypothesis gave up on
            # the operation after hundreds of passing cases.
            "--suppress-health-check",
            "filter_too_much",
            "--no-color",
            "--output-truncate",
            "false",
        ],
        cwd=tmp_path,  # nothing it writes lands in the checkout
        capture_output=True,
        text=True,
        timeout=300,
    )


SECOND_SEED = second_seed()


@pytest.mark.parametrize(
    "seed",
    [FIXED_SEED, SECOND_SEED],
    ids=["fixed-seed", "second-seed"],
)
def test_schemathesis_finds_no_difference_between_the_schema_and_the_service(
    service, stack, tmp_path, seed
):
    url, token = service
    again = "-k fixed-seed" if seed == FIXED_SEED else "-k second-seed"
    rerun = (
        f"seed {seed}; run it again with: "
        + ("" if seed == FIXED_SEED else f"CONTRACT_SEED={seed} ")
        + f"DEBUG=1 ENV_FILE= .venv/bin/pytest tests/e2e/test_contract.py {again}"
    )

    result = schemathesis(url, token, seed, tmp_path)

    summary = [line for line in result.stdout.splitlines() if "generated" in line]
    assert result.returncode == 0, (
        f"Schemathesis failed with {rerun}\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
    )
    # It did test: the five operations, hundreds of cases, links followed.
    assert "5 selected / 5 total" in result.stdout, rerun
    links = re.search(r"API Links:\s+(\d+) covered / \d+ selected / (\d+) total", result.stdout)
    assert links is not None, f"the stateful phase did not run ({rerun})"
    # The fixed seed is known to follow every link; another must follow some (which links
    # a short random run reaches is chance, not drift).
    if seed == FIXED_SEED:
        assert links[1] == links[2], "some of the schema's links were never followed"
    else:
        assert int(links[1]) > 0, f"no link of the schema was followed ({rerun})"
    print(f"seed {seed}: {summary[-1].strip() if summary else result.stdout[-500:]}")


def test_a_request_line_over_the_servers_limit_is_refused_in_json(service):
    # gunicorn answers this one itself, before the application: its page was HTML, the
    # only error of the service that was not JSON, and the schema did not list it.
    url, _ = service

    response = requests.get(f"{url}/tickets", params={"cursor": "x" * 5000}, timeout=10)

    assert response.status_code == 414
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"].startswith("URI Too Long")
