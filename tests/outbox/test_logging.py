from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from django.db import transaction

from outbox.correlation import CorrelationIdFilter, correlation_scope
from outbox.errors import TransientError
from outbox.logging import JsonFormatter, PlainFormatter
from outbox.plaintext import escape_controls, first_control_character
from outbox.runtime.relay import Relay
from outbox.services import TaskSpec, enqueue_many

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the JSON formatter and the correlation filter, as settings do."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationIdFilter())
    logger = logging.getLogger("tests.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def plain_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the plain formatter and the correlation filter, as settings do."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter())
    handler.addFilter(CorrelationIdFilter())
    logger = logging.getLogger("tests.plain")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


# What an attacker puts in an id to forge a record of its own on the next line, or to hide
# one: every line-breaking and invisible character a log reader could trip on.
FORGED_ID = "t-1\n2026-01-01 00:00:00,000 INFO tickets.services [-] refund of t-9 approved"
BREAKERS = ["\n", "\r", "\x00", "\x85", "\u2028", "\u2029", "\u202e", "\x1b[2J"]


def test_a_forged_newline_in_a_logged_id_stays_on_one_plain_line(plain_lines):
    logger, stream = plain_lines

    logger.info("accepted ticket %s", FORGED_ID)

    [line] = stream.getvalue().splitlines()
    assert line.endswith(
        "accepted ticket t-1\\n2026-01-01 00:00:00,000 INFO tickets.services "
        "[-] refund of t-9 approved"
    )


@pytest.mark.parametrize("breaker", BREAKERS)
def test_no_control_character_reaches_a_plain_or_json_line(plain_lines, json_lines, breaker):
    for logger, stream in (plain_lines, json_lines):
        with correlation_scope(f"c{breaker}1"):
            logger.warning("id %s", f"a{breaker}b", extra={"subject": f"t{breaker}2"})

        written = stream.getvalue()
        assert written.count("\n") == 1
        assert written.endswith("\n")
        assert first_control_character(written.rstrip("\n")) is None
        shown = written if stream is plain_lines[1] else json.loads(written)["message"]
        assert escape_controls(f"a{breaker}b") in shown


def test_a_forged_line_in_json_is_escaped_inside_the_value(json_lines):
    logger, stream = json_lines

    logger.info("accepted ticket %s", FORGED_ID, extra={"subject": FORGED_ID})

    [entry] = lines(stream)
    assert entry["message"] == "accepted ticket " + FORGED_ID.replace("\n", "\\n")
    assert entry["subject"] == FORGED_ID.replace("\n", "\\n")


def test_a_traceback_quoting_a_forged_line_is_indented_and_escaped_in_the_plain_format(
    plain_lines,
):
    logger, stream = plain_lines

    try:
        raise ValueError(f"unknown ticket {FORGED_ID}\u2028WARNING forged")
    except ValueError:
        logger.exception("handler crashed")

    head, *rest = stream.getvalue().rstrip("\n").split("\n")
    assert head.endswith("handler crashed")
    assert rest
    assert all(line.startswith("  ") for line in rest)
    assert any("Traceback (most recent call last):" in line for line in rest)
    assert "\\u2028WARNING forged" in rest[-1]


def test_a_line_is_one_json_object_with_time_level_logger_and_message(json_lines):
    logger, stream = json_lines

    logger.warning("claimed %d tasks", 3)

    [entry] = lines(stream)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "tests.json"
    assert entry["message"] == "claimed 3 tasks"
    assert entry["correlation_id"] is None
    assert datetime.fromisoformat(entry["time"]).utcoffset().total_seconds() == 0
    assert len(stream.getvalue().splitlines()) == 1


def test_the_correlation_id_of_the_current_scope_is_on_the_line(json_lines):
    logger, stream = json_lines

    with correlation_scope("corr-7"):
        logger.info("hello")

    assert lines(stream)[0]["correlation_id"] == "corr-7"


def test_the_relay_extras_are_fields_of_the_line(json_lines):
    logger, stream = json_lines

    logger.info(
        "task=12 done",
        extra={
            "correlation_id": "corr-9",
            "task_id": 12,
            "kind": "tickets.issue_receipt",
            "subject": "t-1",
            "outcome": "succeeded",
            "duration_ms": 4.2,
        },
    )

    [entry] = lines(stream)
    assert {k: entry[k] for k in ("correlation_id", "task_id", "kind", "subject")} == {
        "correlation_id": "corr-9",
        "task_id": 12,
        "kind": "tickets.issue_receipt",
        "subject": "t-1",
    }
    assert (entry["outcome"], entry["duration_ms"]) == ("succeeded", 4.2)


def test_other_extras_and_customer_emails_stay_out_of_the_line(json_lines):
    logger, stream = json_lines

    logger.info(
        "sheet refused row for ada.lovelace+tix@example.co.uk",
        extra={"customer_email": "ada@example.com", "token": "s3cret"},
    )

    raw = stream.getvalue()
    assert "example" not in raw
    assert "s3cret" not in raw
    assert lines(stream)[0]["message"] == "sheet refused row for [email]"


def test_an_exception_is_written_into_the_same_line(json_lines):
    logger, stream = json_lines

    try:
        raise ValueError("bad payload for bob@example.com")
    except ValueError:
        logger.exception("handler crashed")

    [entry] = lines(stream)
    assert "ValueError: bad payload for [email]" in entry["exception"]
    assert "Traceback" in entry["exception"]


@pytest.mark.django_db
def test_the_relay_logs_each_attempt_as_json_with_its_task_fields(recording_handler):
    def fail(task):
        raise TransientError("gateway answered 503", http_status=503)

    recording_handler("test.json_log", behaviour=fail, label="ticket_id")
    with transaction.atomic():
        [created] = enqueue_many(
            [
                TaskSpec(
                    kind="test.json_log",
                    payload={"ticket_id": "t-5", "customer_email": "eve@example.com"},
                    correlation_id="corr-relay",
                )
            ]
        )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationIdFilter())
    attempts_logger = logging.getLogger("outbox.attempts")
    attempts_logger.addHandler(handler)
    previous_level = attempts_logger.level
    attempts_logger.setLevel(logging.INFO)
    try:
        Relay(threads=1, batch_size=10).run_once()
    finally:
        attempts_logger.removeHandler(handler)
        attempts_logger.setLevel(previous_level)

    [entry] = lines(stream)
    assert entry["logger"] == "outbox.attempts"
    assert entry["level"] == "WARNING"
    assert entry["correlation_id"] == "corr-relay"
    assert entry["task_id"] == created.id
    assert entry["kind"] == "test.json_log"
    assert entry["subject"] == "t-5"
    assert entry["outcome"] == "retry"
    assert isinstance(entry["duration_ms"], float)
    assert "eve@example.com" not in stream.getvalue()


def run_with_log_format(log_format: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('outbox.probe').warning('probe %s', 1)"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DEBUG": "1",
        "LOG_FORMAT": log_format,
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_log_format_json_makes_the_console_write_json():
    result = run_with_log_format("json")

    assert result.returncode == 0, result.stderr
    [line] = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert (entry["logger"], entry["message"]) == ("outbox.probe", "probe 1")


def test_log_format_plain_is_the_classic_line():
    result = run_with_log_format("plain")

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("WARNING outbox.probe [-] probe 1")


def test_an_unknown_log_format_fails_loudly():
    result = run_with_log_format("xml")

    assert result.returncode != 0
    assert "LOG_FORMAT='xml' must be one of plain, json" in result.stderr


@pytest.mark.django_db
def test_an_attempt_line_names_the_subject_its_handler_labels_and_no_other(
    recording_handler, caplog
):
    recording_handler("test.labelled", label="order")
    recording_handler("test.unlabelled")
    with transaction.atomic():
        enqueue_many(
            [
                TaskSpec(kind="test.labelled", payload={"order": "o-7"}),
                TaskSpec(kind="test.unlabelled", payload={"order": "o-8"}),
            ]
        )
    with caplog.at_level(logging.INFO, logger="outbox.attempts"):
        Relay(threads=1, batch_size=10).run_once()

    subjects = {r.kind: r.subject for r in caplog.records if r.name == "outbox.attempts"}
    assert subjects == {"test.labelled": "o-7", "test.unlabelled": None}
    assert any("subject=o-7 " in r.getMessage() for r in caplog.records)
    assert any("subject=- " in r.getMessage() for r in caplog.records)
