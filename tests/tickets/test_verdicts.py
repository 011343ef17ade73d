"""The verdict table (tickets.verdicts), row by row: what each answer of each endpoint means.

docs/GATEWAY_API.md's "What an answer means" table is this table; a row changed here is a
row changed there.
"""

from __future__ import annotations

import json

import pytest

from tickets.verdicts import (
    APPEND_ROW,
    ENDPOINTS,
    ISSUE_RECEIPT,
    LOCATION_CHARS,
    READ_ROWS,
    REFUND,
    VOID_RECEIPT,
    Endpoint,
    Verdict,
    read_answer,
    read_failure,
)

JSON = "application/json"
HTML = "text/html; charset=utf-8"
MAINTENANCE = b"<html><body>Down for maintenance</body></html>"
WRITES = [ISSUE_RECEIPT, VOID_RECEIPT, REFUND, APPEND_ROW]


def body(payload: object) -> bytes:
    return json.dumps(payload).encode()


CONFIRMING = {
    ISSUE_RECEIPT.name: (201, body({"ticket_id": "t-1", "number": "R-1", "issued_at": "x"})),
    VOID_RECEIPT.name: (200, body({"ticket_id": "t-1", "reason": "r", "idempotent_id": "k"})),
    REFUND.name: (201, body({"payment_reference": "t-1", "reason": "r", "deduplication_id": "k"})),
    APPEND_ROW.name: (201, body({"sheet": "tickets-to-print", "row": 7})),
    READ_ROWS.name: (200, body({"rows": [["t-1", "a@b.c", "1.00", "EUR"]]})),
}
EXPECT = {
    ISSUE_RECEIPT.name: {"ticket_id": "t-1"},
    VOID_RECEIPT.name: {"ticket_id": "t-1", "idempotent_id": "k"},
    REFUND.name: {"payment_reference": "t-1", "deduplication_id": "k"},
    APPEND_ROW.name: {"sheet": "tickets-to-print"},
    READ_ROWS.name: {},
}


def read(endpoint: Endpoint, status: int, content: bytes, content_type: str = JSON, **kw):
    return read_answer(
        endpoint,
        status=status,
        body=content,
        content_type=content_type,
        url="http://gw/x",
        expect=EXPECT[endpoint.name],
        **kw,
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_the_contracts_own_answer_confirms_the_effect(endpoint):
    status, content = CONFIRMING[endpoint.name]

    assert read(endpoint, status, content).verdict == Verdict.DONE


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_a_proxys_200_maintenance_page_is_an_answered_transient_failure(endpoint):
    reading = read(endpoint, 200, MAINTENANCE, HTML)

    assert reading.verdict == Verdict.RETRY
    assert "text/html" in reading.reason
    assert "Down for maintenance" in reading.reason  # the body's first bytes, for the operator


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize(
    "content",
    [
        body({"status": "ok"}),
        body({"error": "upstream unavailable"}),
        body(["t-1"]),
        b"not json at all",
    ],
    ids=["foreign-object", "error-object", "a-list", "not-json"],
)
def test_a_2xx_json_of_the_wrong_shape_proves_nothing(endpoint, content):
    status, _ = CONFIRMING[endpoint.name]

    assert read(endpoint, status, content, "").verdict == Verdict.RETRY


def test_an_answer_about_another_ticket_proves_nothing():
    content = body({"ticket_id": "t-2", "number": "R-1"})

    assert read(ISSUE_RECEIPT, 201, content).verdict == Verdict.RETRY


def test_a_receipt_without_a_number_proves_nothing():
    assert read(ISSUE_RECEIPT, 201, body({"ticket_id": "t-1"})).verdict == Verdict.RETRY
    assert read(ISSUE_RECEIPT, 201, body({"ticket_id": "t-1", "number": ""})).verdict == (
        Verdict.RETRY
    )


@pytest.mark.parametrize(
    ("endpoint", "confirms"),
    [(VOID_RECEIPT, True), (REFUND, True), (APPEND_ROW, True), (ISSUE_RECEIPT, False)],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_an_empty_body_confirms_only_writes_that_need_nothing_back(endpoint, confirms):
    verdict = read(endpoint, 200, b"").verdict

    assert verdict == (Verdict.DONE if confirms else Verdict.RETRY)


@pytest.mark.parametrize("endpoint", WRITES, ids=lambda e: e.name)
def test_a_2xx_the_contract_does_not_name_proves_nothing(endpoint):
    # 202 Accepted: queued, not done.
    _, content = CONFIRMING[endpoint.name]

    assert read(endpoint, 202, content).verdict == Verdict.RETRY


@pytest.mark.parametrize("endpoint", WRITES, ids=lambda e: e.name)
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_on_a_write_is_a_misconfiguration_naming_where_it_points(endpoint, status):
    reading = read(endpoint, status, b"", location="https://moved.example.com/x")

    assert reading.verdict == Verdict.MISCONFIGURED
    assert "https://moved.example.com/x" in reading.reason
    assert "http://gw/x" in reading.reason


SECRET_LOCATION = (
    "https://deploy:s3cr3t-pass@moved.example.com:8443/v2/rows"
    "?token=tok-0123456789&sig=sig-abcdef&owner=ops@example.com#frag-secret"
)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_a_redirects_location_is_shown_without_its_credentials_or_query_values(endpoint):
    # The reason is stored on the attempt and logged: a Location can carry a password or a
    # signed URL's token, which would then sit in the database and the logs.
    reading = read(endpoint, 302, b"", location=SECRET_LOCATION)

    assert reading.verdict == Verdict.MISCONFIGURED
    assert "https://moved.example.com:8443/v2/rows?token=[hidden]&sig=[hidden]" in reading.reason
    for secret in ("deploy", "s3cr3t-pass", "tok-0123456789", "sig-abcdef", "ops@", "frag-"):
        assert secret not in reading.reason


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("/moved?tok-0123456789", "/moved?[hidden]"),
        (
            "https://moved.example.com/ops@example.com/rows",
            "https://moved.example.com/[email]/rows",
        ),
        ("https://[::1]:8443/rows", "https://[::1]:8443/rows"),
        ("http://moved.example.com:port/rows", "a Location that is not a URL"),
        ("", "no Location"),
    ],
)
def test_a_location_of_any_shape_is_shown_redacted(location, shown):
    reading = read(APPEND_ROW, 301, b"", location=location)

    assert f"a redirect to {shown}:" in reading.reason


def test_a_long_location_is_cut():
    reading = read(APPEND_ROW, 301, b"", location="https://moved.example.com/" + "a" * 5000)

    assert "a" * LOCATION_CHARS not in reading.reason
    assert len(reading.reason) < LOCATION_CHARS + 200


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize(
    "content",
    [b"404 page not found", body({"error": {"code": 404, "message": "Not Found"}})],
    ids=["plain", "json-error"],
)
def test_every_404_of_an_endpoint_without_one_in_its_contract_is_a_wrong_address(endpoint, content):
    reading = read(endpoint, 404, content)

    assert reading.verdict == Verdict.MISCONFIGURED
    assert "GATEWAY_ADDR" in reading.reason
    assert "http://gw/x" in reading.reason


def test_a_404_stays_an_answer_where_the_contract_defines_one():
    void_with_404 = Endpoint(
        name="void, with a 404 for an unknown receipt",
        api="receipts",
        method="PUT",
        write=True,
        success=frozenset({200}),
        defines_404=True,
    )

    reading = read_answer(void_with_404, status=404, body=body({"error": "no such receipt"}))

    assert reading.verdict == Verdict.FAIL
    assert "no such receipt" in reading.reason


@pytest.mark.parametrize("status", [401, 403, 405, 407])
def test_answers_about_our_configuration_fail_no_task(status):
    assert read(APPEND_ROW, status, body({"error": "nope"})).verdict == Verdict.MISCONFIGURED


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (400, Verdict.FAIL),
        (409, Verdict.FAIL),
        (422, Verdict.FAIL),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (502, Verdict.WAIT),
        (504, Verdict.WAIT),
    ],
)
def test_error_statuses(status, verdict):
    reading = read(APPEND_ROW, status, body({"error": "the API's own words"}))

    assert reading.verdict == verdict
    assert "the API's own words" in reading.reason


def test_a_garbage_500_is_still_an_answer():
    # A broken proxy's page with NUL and bytes that are not UTF-8: the API answered 500.
    reading = read(APPEND_ROW, 500, b"<html>\x00\xff\xfe bad gateway</html>", HTML)

    assert reading.verdict == Verdict.RETRY


def test_an_answers_text_is_redacted_before_it_is_stored():
    reading = read(APPEND_ROW, 500, body({"error": "row for ada@example.com failed"}))

    assert "ada@example.com" not in reading.reason


def test_a_call_that_was_sent_and_got_no_answer_must_wait():
    reading = read_failure(APPEND_ROW, what="POST x", problem="timed out", sent=True)

    assert reading.verdict == Verdict.WAIT
    assert "may still write" in reading.reason


@pytest.mark.parametrize("refused", [True, False])
def test_a_call_that_never_connected_sent_nothing(refused):
    reading = read_failure(APPEND_ROW, what="POST x", problem="dns", sent=False, refused=refused)

    assert reading.verdict == Verdict.NOT_SENT
