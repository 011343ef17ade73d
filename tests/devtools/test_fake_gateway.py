"""The fake gateway over real HTTP: contracts, idempotency, inspection and failure injection."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import CommandError, call_command

from devtools.fake_gateway import apis as fake_apis

PRINT = "/spreadsheets-api/sheets/tickets-to-print/rows"
MANAGE_PY = Path(__file__).resolve().parents[2] / "manage.py"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def receipt_body(ticket_id: str = "t-1", key: str = "key-1", **price: Any) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "price": {"money_amount": "50.00", "money_currency": "EUR", **price},
        "idempotency_key": key,
    }


def put_receipt(
    http: requests.Session, base_url: str, body: Any, correlation_id: str | None = None
) -> requests.Response:
    headers = {"Correlation-ID": correlation_id} if correlation_id else {}
    return http.put(f"{base_url}/receipts-api/receipts", json=body, headers=headers, timeout=5)


def control(http: requests.Session, base_url: str, **changes: Any) -> requests.Response:
    return http.post(f"{base_url}/fake-gateway/control", json=changes, timeout=5)


def state(http: requests.Session, base_url: str, query: str = "") -> dict[str, Any]:
    response = http.get(f"{base_url}/fake-gateway/state{query}", timeout=5)
    assert response.status_code == 200
    return response.json()


# Receipts


def test_a_new_receipt_key_answers_201_with_a_numbered_receipt(http, base_url):
    response = put_receipt(http, base_url, receipt_body())

    assert response.status_code == 201
    body = response.json()
    assert body["ticket_id"] == "t-1"
    assert body["number"] == "R-000001"
    assert body["price"] == {"money_amount": "50.00", "money_currency": "EUR"}
    assert body["idempotency_key"] == "key-1"
    issued_at = datetime.fromisoformat(body["issued_at"])
    assert issued_at.utcoffset() is not None
    assert issued_at.utcoffset().total_seconds() == 0


def test_receipts_for_new_keys_get_the_next_number(http, base_url):
    put_receipt(http, base_url, receipt_body("t-1", "key-1"))
    response = put_receipt(http, base_url, receipt_body("t-2", "key-2"))

    assert response.status_code == 201
    assert response.json()["number"] == "R-000002"


def test_a_repeated_receipt_key_answers_200_with_the_same_number(http, base_url):
    first = put_receipt(http, base_url, receipt_body())
    repeat = put_receipt(http, base_url, receipt_body())

    assert repeat.status_code == 200
    assert repeat.json() == first.json()
    assert len(state(http, base_url)["receipts"]) == 1


def test_a_receipt_key_reused_for_another_ticket_answers_400_and_issues_nothing(http, base_url):
    put_receipt(http, base_url, receipt_body("t-1", "key-1"))

    response = put_receipt(http, base_url, receipt_body("t-2", "key-1"))

    assert response.status_code == 400
    assert "key-1" in response.json()["error"]
    assert "t-1" in response.json()["error"]
    assert [r["ticket_id"] for r in state(http, base_url)["receipts"]] == ["t-1"]


def test_the_same_ticket_under_another_key_gets_a_second_receipt(http, base_url):
    put_receipt(http, base_url, receipt_body("t-1", "key-1"))
    response = put_receipt(http, base_url, receipt_body("t-1", "key-2"))

    assert response.status_code == 201
    assert [r["number"] for r in state(http, base_url)["receipts"]] == ["R-000001", "R-000002"]


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("ticket_id", lambda b: b.pop("ticket_id")),
        ("idempotency_key", lambda b: b.pop("idempotency_key")),
        ("price", lambda b: b.pop("price")),
        ("price.money_amount", lambda b: b["price"].pop("money_amount")),
        ("price.money_currency", lambda b: b["price"].pop("money_currency")),
    ],
)
def test_a_receipt_without_a_field_answers_400_naming_it(http, base_url, field, mutate):
    body = receipt_body()
    mutate(body)

    response = put_receipt(http, base_url, body)

    assert response.status_code == 400
    assert response.json()["error"] == f"{field} is required"
    assert state(http, base_url)["receipts"] == []


def test_a_receipt_with_a_float_amount_answers_400(http, base_url):
    response = put_receipt(http, base_url, receipt_body(money_amount=50.0))

    assert response.status_code == 400
    assert "price.money_amount" in response.json()["error"]


def test_a_receipt_with_an_amount_that_is_not_a_decimal_answers_400(http, base_url):
    response = put_receipt(http, base_url, receipt_body(money_amount="fifty"))

    assert response.status_code == 400
    assert "price.money_amount" in response.json()["error"]


def test_a_body_that_is_not_json_answers_400(http, base_url):
    response = http.put(f"{base_url}/receipts-api/receipts", data=b"{nope", timeout=5)

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_a_receipt_records_the_correlation_id_of_every_call(http, base_url):
    put_receipt(http, base_url, receipt_body(), correlation_id="corr-1")
    put_receipt(http, base_url, receipt_body(), correlation_id="corr-2")

    [receipt] = state(http, base_url)["receipts"]
    assert receipt["correlation_id"] == "corr-1"
    assert receipt["correlation_ids"] == ["corr-1", "corr-2"]


# Void and refund


def test_a_repeated_void_answers_200_and_is_recorded_once(http, base_url):
    body = {"ticket_id": "t-1", "reason": "refund", "idempotent_id": "void-1"}
    url = f"{base_url}/receipts-api/void-receipt"

    first = http.put(url, json=body, headers={"Correlation-ID": "corr-v"}, timeout=5)
    repeat = http.put(url, json=body, timeout=5)

    assert (first.status_code, repeat.status_code) == (200, 200)
    [void] = state(http, base_url)["voids"]
    assert void["ticket_id"] == "t-1"
    assert void["idempotent_id"] == "void-1"
    assert void["correlation_id"] == "corr-v"


def test_a_void_without_an_idempotent_id_answers_400_naming_it(http, base_url):
    response = http.put(
        f"{base_url}/receipts-api/void-receipt",
        json={"ticket_id": "t-1", "reason": "refund"},
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json()["error"] == "idempotent_id is required"
    assert state(http, base_url)["voids"] == []


def test_a_repeated_refund_is_recorded_once(http, base_url):
    body = {"payment_reference": "t-1", "reason": "refund", "deduplication_id": "refund-1"}
    url = f"{base_url}/payments-api/refunds"

    first = http.put(url, json=body, headers={"Correlation-ID": "corr-r"}, timeout=5)
    repeat = http.put(url, json=body, timeout=5)

    assert (first.status_code, repeat.status_code) == (201, 200)
    [refund] = state(http, base_url)["refunds"]
    assert refund["payment_reference"] == "t-1"
    assert refund["correlation_id"] == "corr-r"


def test_a_refund_id_reused_for_another_payment_answers_400(http, base_url):
    url = f"{base_url}/payments-api/refunds"
    http.put(
        url, json={"payment_reference": "t-1", "reason": "r", "deduplication_id": "d"}, timeout=5
    )

    response = http.put(
        url, json={"payment_reference": "t-2", "reason": "r", "deduplication_id": "d"}, timeout=5
    )

    assert response.status_code == 400
    assert "deduplication_id" in response.json()["error"]
    assert len(state(http, base_url)["refunds"]) == 1


def test_a_refund_without_a_deduplication_id_answers_400_naming_it(http, base_url):
    response = http.put(
        f"{base_url}/payments-api/refunds",
        json={"payment_reference": "t-1", "reason": "refund"},
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json()["error"] == "deduplication_id is required"


# Sheets


def test_appending_the_same_row_twice_makes_two_rows(http, base_url):
    row = ["t-1", "ada@example.com", "50.00", "EUR"]

    first = http.post(f"{base_url}{PRINT}", json={"columns": row}, timeout=5)
    second = http.post(f"{base_url}{PRINT}", json={"columns": row}, timeout=5)

    assert (first.status_code, second.status_code) == (201, 201)
    assert http.get(f"{base_url}{PRINT}", timeout=5).json() == {"rows": [row, row]}


def test_rows_are_listed_per_sheet_in_the_order_they_were_appended(http, base_url):
    for ticket_id in ("t-1", "t-2"):
        http.post(f"{base_url}{PRINT}", json={"columns": [ticket_id]}, timeout=5)
    refund_rows = "/spreadsheets-api/sheets/tickets-to-refund/rows"
    http.post(f"{base_url}{refund_rows}", json={"columns": ["t-3"]}, timeout=5)

    assert http.get(f"{base_url}{PRINT}", timeout=5).json() == {"rows": [["t-1"], ["t-2"]]}
    assert state(http, base_url)["sheets"] == {
        "tickets-to-print": [["t-1"], ["t-2"]],
        "tickets-to-refund": [["t-3"]],
    }


def test_a_sheet_nobody_wrote_to_lists_no_rows(http, base_url):
    response = http.get(f"{base_url}/spreadsheets-api/sheets/empty/rows", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"rows": []}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "columns is required"),
        ({"columns": "t-1"}, "columns must be a list of strings"),
        ({"columns": ["t-1", 5]}, "columns must be a list of strings"),
    ],
)
def test_a_row_without_string_columns_answers_400(http, base_url, body, error):
    response = http.post(f"{base_url}{PRINT}", json=body, timeout=5)

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert state(http, base_url)["sheets"] == {}


def test_each_row_records_the_correlation_id_of_its_append(http, base_url):
    http.post(
        f"{base_url}{PRINT}", json={"columns": ["t-1"]}, headers={"Correlation-ID": "c"}, timeout=5
    )

    [row] = state(http, base_url)["sheet_rows"]["tickets-to-print"]
    assert row["columns"] == ["t-1"]
    assert row["correlation_id"] == "c"


# Routing and protocol


def test_an_unknown_path_answers_a_json_404_like_an_api_error(http, base_url):
    # A web server's 404, not the APIs' `{"error": ...}`: the client reads it as a wrong
    # GATEWAY_ADDR rather than as an answer about a ticket.
    response = http.get(f"{base_url}/receipts-api/nothing", timeout=5)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "text/plain"
    assert "/receipts-api/nothing" in response.text


def test_a_wrong_method_answers_405_with_the_allowed_ones(http, base_url):
    response = http.get(f"{base_url}/receipts-api/receipts", timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "PUT"


def raw_exchange(base_url: str, payload: bytes) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_one_connection_answers_pipelined_requests_in_order_and_honours_close(base_url):
    get = b"GET /spreadsheets-api/sheets/s/rows HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b'{"columns":["t-1"]}'
    post = (
        b"POST /spreadsheets-api/sheets/s/rows HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    last = b"GET /spreadsheets-api/sheets/s/rows HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    answer = raw_exchange(base_url, get + post + last)

    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.index(b"HTTP/1.1 201 Created") < answer.rindex(b"HTTP/1.1 200 OK")
    assert answer.endswith(b'{"rows":[["t-1"]]}')
    assert b"Connection: close" in answer


def test_a_malformed_request_line_answers_400_and_closes(base_url):
    answer = raw_exchange(base_url, b"NONSENSE\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"Connection: close" in answer


def test_a_chunked_body_answers_411(base_url):
    answer = raw_exchange(
        base_url,
        b"POST /spreadsheets-api/sheets/s/rows HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )

    assert answer.startswith(b"HTTP/1.1 411 Length Required")


# Inspection


def test_state_logs_the_correlation_id_and_status_of_every_api_call(http, base_url):
    put_receipt(http, base_url, receipt_body(), correlation_id="corr-1")
    http.get(f"{base_url}{PRINT}", headers={"Correlation-ID": "corr-2"}, timeout=5)
    http.get(f"{base_url}/fake-gateway/control", timeout=5)

    calls = state(http, base_url)["calls"]

    assert [(c["method"], c["path"], c["correlation_id"], c["status"]) for c in calls] == [
        ("PUT", "/receipts-api/receipts", "corr-1", 201),
        ("GET", PRINT, "corr-2", 200),
    ]


def test_state_returns_only_the_newest_calls_when_asked(http, base_url):
    for n in range(3):
        put_receipt(http, base_url, receipt_body(f"t-{n}", f"key-{n}"), correlation_id=f"c-{n}")

    snapshot = state(http, base_url, "?calls=1")

    assert [c["correlation_id"] for c in snapshot["calls"]] == ["c-2"]
    assert snapshot["stats"]["calls"] == 3
    assert snapshot["stats"]["by_status"] == {"201": 3}


def test_state_rejects_a_bad_calls_parameter(http, base_url):
    response = http.get(f"{base_url}/fake-gateway/state?calls=-1", timeout=5)

    assert response.status_code == 400
    assert "calls" in response.json()["error"]


def test_state_is_json_the_simulator_can_read(http, base_url):
    put_receipt(http, base_url, receipt_body(), correlation_id="c")

    raw = http.get(f"{base_url}/fake-gateway/state", timeout=5).text

    assert set(json.loads(raw)) == {
        "receipts",
        "voids",
        "refunds",
        "sheets",
        "sheet_rows",
        "calls",
        "stats",
        "config",
    }


def test_the_call_log_keeps_only_the_newest_calls(monkeypatch, gateway):
    monkeypatch.setattr(fake_apis, "CALLS_KEPT", 2)
    gateway.reset()

    for n in range(3):
        gateway.handle("GET", PRINT, b"", f"c-{n}")

    snapshot = gateway.snapshot()
    assert [c["correlation_id"] for c in snapshot["calls"]] == ["c-1", "c-2"]
    assert snapshot["stats"]["calls"] == 3


def test_reset_forgets_everything_and_restarts_the_numbering(http, base_url):
    put_receipt(http, base_url, receipt_body("t-1", "key-1"))
    http.post(f"{base_url}{PRINT}", json={"columns": ["t-1"]}, timeout=5)

    response = http.post(f"{base_url}/fake-gateway/reset", timeout=5)

    assert response.status_code == 200
    snapshot = state(http, base_url)
    assert snapshot["receipts"] == snapshot["calls"] == []
    assert snapshot["sheets"] == {}
    assert put_receipt(http, base_url, receipt_body("t-1", "key-1")).json()["number"] == "R-000001"


# Failure injection


def test_failure_rate_1_answers_500_and_writes_nothing(http, base_url):
    control(http, base_url, failure_rate=1)

    receipt = put_receipt(http, base_url, receipt_body())
    row = http.post(f"{base_url}{PRINT}", json={"columns": ["t-1"]}, timeout=5)

    assert (receipt.status_code, row.status_code) == (500, 500)
    assert receipt.json() == {"error": "injected failure"}
    snapshot = state(http, base_url)
    assert snapshot["receipts"] == []
    assert snapshot["sheets"] == {}
    assert snapshot["stats"]["injected"] == {"failure": 2}


def test_failure_rate_0_never_fails(http, base_url):
    control(http, base_url, failure_rate=0, fail_after_write_rate=0, rate_limit_rate=0)

    statuses = {
        put_receipt(http, base_url, receipt_body(f"t-{n}", f"key-{n}")).status_code
        for n in range(50)
    }

    assert statuses == {201}


def test_fail_after_write_writes_the_receipt_then_answers_500(http, base_url):
    control(http, base_url, fail_after_write_rate=1)

    response = put_receipt(http, base_url, receipt_body())

    assert response.status_code == 500
    assert [r["number"] for r in state(http, base_url)["receipts"]] == ["R-000001"]
    control(http, base_url, fail_after_write_rate=0)
    retry = put_receipt(http, base_url, receipt_body())
    assert (retry.status_code, retry.json()["number"]) == (200, "R-000001")


def test_fail_after_write_appends_the_row_then_answers_500(http, base_url):
    control(http, base_url, fail_after_write_rate=1)

    response = http.post(f"{base_url}{PRINT}", json={"columns": ["t-1"]}, timeout=5)

    assert response.status_code == 500
    assert state(http, base_url)["sheets"] == {"tickets-to-print": [["t-1"]]}


def test_a_rate_limited_call_answers_429_with_retry_after(http, base_url):
    control(http, base_url, rate_limit_rate=1, retry_after_seconds=7)

    response = put_receipt(http, base_url, receipt_body())

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert state(http, base_url)["receipts"] == []


def test_a_down_api_answers_503_while_the_others_work(http, base_url):
    control(http, base_url, down=["receipts"])

    receipt = put_receipt(http, base_url, receipt_body())
    void = http.put(
        f"{base_url}/receipts-api/void-receipt",
        json={"ticket_id": "t-1", "reason": "r", "idempotent_id": "v"},
        timeout=5,
    )
    row = http.post(f"{base_url}{PRINT}", json={"columns": ["t-1"]}, timeout=5)

    assert (receipt.status_code, void.status_code, row.status_code) == (503, 503, 201)
    assert "receipts" in receipt.json()["error"]


def test_the_same_seed_injects_the_same_failures(http, base_url):
    def statuses() -> list[int]:
        control(http, base_url, failure_rate=0.5, seed=42)
        return [
            http.post(f"{base_url}{PRINT}", json={"columns": ["t"]}, timeout=5).status_code
            for _ in range(30)
        ]

    first, second = statuses(), statuses()

    assert first == second
    assert set(first) == {201, 500}


def test_latency_applies_to_api_calls_and_not_to_inspection(gateway):
    gateway.configure({"latency_ms": 250})

    assert gateway.latency_seconds("/receipts-api/receipts") == 0.25
    assert gateway.latency_seconds("/fake-gateway/state") == 0.0


def test_control_and_inspection_endpoints_never_fail(http, base_url):
    control(
        http,
        base_url,
        failure_rate=1,
        rate_limit_rate=1,
        down=["receipts", "payments", "spreadsheets"],
    )

    assert http.get(f"{base_url}/fake-gateway/control", timeout=5).status_code == 200
    assert http.get(f"{base_url}/fake-gateway/state", timeout=5).status_code == 200
    assert http.post(f"{base_url}/fake-gateway/reset", timeout=5).status_code == 200
    assert control(http, base_url, down=[]).status_code == 200


def test_control_merges_changes_into_the_running_config(http, base_url):
    control(http, base_url, failure_rate=0.25)
    response = control(http, base_url, latency_ms=10, down=["payments"])

    assert response.status_code == 200
    config = http.get(f"{base_url}/fake-gateway/control", timeout=5).json()
    assert config == {
        "failure_rate": 0.25,
        "fail_after_write_rate": 0.0,
        "latency_ms": 10.0,
        "append_latency_ms": 0.0,
        "garbage_bodies": False,
        "rate_limit_rate": 0.0,
        "retry_after_seconds": 1,
        "fake_success_rate": 0.0,
        "redirect_rate": 0.0,
        "json_404s": False,
        "down": ["payments"],
        "seed": 0,
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"fail_after_write_rate": -0.1}, "fail_after_write_rate"),
        ({"rate_limit_rate": "0.5"}, "rate_limit_rate"),
        ({"failure_rate": True}, "failure_rate"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"retry_after_seconds": 1.5}, "retry_after_seconds"),
        ({"down": ["mail"]}, "down"),
        ({"down": "receipts"}, "down"),
        ({"seed": "x"}, "seed"),
        ({"failure_rate": 0.5, "surprise": 1}, "surprise"),
    ],
)
def test_control_rejects_bad_input_naming_the_field_and_changes_nothing(
    http, base_url, changes, field
):
    before = http.get(f"{base_url}/fake-gateway/control", timeout=5).json()

    response = http.post(f"{base_url}/fake-gateway/control", json=changes, timeout=5)

    assert response.status_code == 400
    assert field in response.json()["error"]
    assert http.get(f"{base_url}/fake-gateway/control", timeout=5).json() == before


@pytest.mark.parametrize("raw", [b"[1]", b"{broken"])
def test_control_rejects_a_body_that_is_not_a_json_object(http, base_url, raw):
    response = http.post(f"{base_url}/fake-gateway/control", data=raw, timeout=5)

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


# The command


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--failure-rate", "1.5"], "--failure-rate"),
        (["--fail-after-write-rate", "-1"], "--fail-after-write-rate"),
        (["--rate-limit-rate", "2"], "--rate-limit-rate"),
        (["--down", "receipts,mail"], "--down"),
        (["--retry-after-seconds", "-3"], "--retry-after-seconds"),
        (["--port", "70000"], "--port"),
    ],
)
def test_the_command_rejects_bad_arguments(args, flag):
    with pytest.raises(CommandError, match=flag):
        call_command("fake_gateway", *args)


def read_line(process: subprocess.Popen[str], *, timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            _, err = process.communicate()
            raise AssertionError(f"no output within {timeout} s; stderr: {err}")
    return process.stdout.readline().strip()


@pytest.mark.e2e
def test_the_command_serves_with_the_flags_it_was_given_and_stops_on_sigterm():
    process = subprocess.Popen(
        [
            sys.executable,
            str(MANAGE_PY),
            "fake_gateway",
            "--port",
            "0",
            "--seed",
            "3",
            "--failure-rate",
            "0.5",
            "--down",
            "payments",
            "--down",
            "receipts,spreadsheets",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "DEBUG": os.environ.get("DEBUG", "1")},
        text=True,
    )
    try:
        first_line = read_line(process, timeout=30)
        assert first_line.startswith("Fake gateway listening on http://127.0.0.1:")
        base_url = first_line.split()[-1]
        config = requests.get(f"{base_url}/fake-gateway/control", timeout=5).json()
        receipt = requests.put(f"{base_url}/receipts-api/receipts", json=receipt_body(), timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)

    assert config["seed"] == 3
    assert config["failure_rate"] == 0.5
    assert config["down"] == ["payments", "receipts", "spreadsheets"]
    assert receipt.status_code == 503
    assert process.returncode == 0, err
    assert "Fake gateway stopped." in out


def test_a_restarted_gateway_reuses_receipt_numbers(tmp_path):
    from devtools.fake_gateway import FakeGateway, load_state, save_state

    def issue(gateway: FakeGateway, ticket_id: str) -> dict:
        body = {
            "ticket_id": ticket_id,
            "price": {"money_amount": "5.00", "money_currency": "EUR"},
            "idempotency_key": f"key-{ticket_id}",
        }
        reply = gateway.handle("PUT", "/receipts-api/receipts", json.dumps(body).encode(), "c")
        return json.loads(reply.body)

    path = tmp_path / "var" / "fake-gateway.json"
    first = FakeGateway()
    assert issue(first, "t-1")["number"] == "R-000001"
    save_state(first, path)

    restarted = FakeGateway()
    assert load_state(restarted, path) == 1

    assert issue(restarted, "t-2")["number"] == "R-000002"
    assert issue(restarted, "t-1")["number"] == "R-000001", "the same key, the same receipt"
    assert not list(path.parent.glob(".*.tmp")), "written atomically, no leftover"


def test_a_state_file_that_is_not_one_is_loaded_silently(tmp_path):
    from devtools.fake_gateway import ConfigError, FakeGateway, load_state

    path = tmp_path / "state.json"
    path.write_text("[1, 2]")

    with pytest.raises(ConfigError, match="is not a fake gateway state file"):
        load_state(FakeGateway(), path)


APPEND_PATH = "/spreadsheets-api/sheets/tickets-to-print/rows"


def test_a_fake_success_answers_a_maintenance_page_and_writes_nothing():
    gateway = fake_apis.FakeGateway(fake_apis.FaultConfig(fake_success_rate=1.0))

    reply = gateway.handle("POST", APPEND_PATH, json.dumps({"columns": ["t-1"]}).encode(), "c")

    assert reply.status == 200
    assert reply.content_type.startswith("text/html")
    state = gateway.snapshot()
    assert state["sheets"] == {}
    assert state["stats"]["injected"] == {"fake_success": 1}


def test_an_injected_redirect_points_elsewhere_and_writes_nothing():
    gateway = fake_apis.FakeGateway(fake_apis.FaultConfig(redirect_rate=1.0))
    body = json.dumps({"payment_reference": "t-1", "reason": "r", "deduplication_id": "k"})

    reply = gateway.handle("PUT", "/payments-api/refunds", body.encode(), "c")

    assert reply.status == 301
    assert dict(reply.headers)["Location"] == f"{fake_apis.REDIRECT_LOCATION}/payments-api/refunds"
    assert gateway.snapshot()["refunds"] == []
    # Reads are left alone: only writes meet the thing in front of the API.
    assert gateway.handle("GET", APPEND_PATH, b"", "c").status == 200


def test_json_404s_answer_unknown_paths_as_googles_apis_do():
    gateway = fake_apis.FakeGateway(fake_apis.FaultConfig(json_404s=True))

    reply = gateway.handle("PUT", "/v1/receipts-api/receipts", b"{}", "c")

    assert reply.status == 404
    assert json.loads(reply.body)["error"]["code"] == 404
