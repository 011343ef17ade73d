"""The client layer (tickets.gateway) against a real fake gateway over real HTTP."""

from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.test import override_settings
from django.utils import timezone
from django.utils.http import http_date

from outbox.errors import (
    ANSWERED,
    NO_ANSWER,
    NOT_SENT,
    Misconfigured,
    PermanentError,
    TransientError,
)
from outbox.models import Circuit
from outbox.runtime.circuit import CircuitOpen
from tickets.gateway import (
    PaymentsClient,
    ReceiptsClient,
    SpreadsheetsClient,
    call_environment,
    retry_after_seconds,
)

# The client layer shares its circuit breakers through the database.
pytestmark = pytest.mark.django_db


def issue(client: ReceiptsClient, ticket_id: str = "t-1", key: str = "key-1") -> dict:
    return client.issue(
        ticket_id=ticket_id,
        amount="50.00",
        currency="EUR",
        idempotency_key=key,
        correlation_id="corr-1",
    )


def test_a_new_receipt_returns_the_201_body(base_url):
    receipt = issue(ReceiptsClient(base_url=base_url))

    assert receipt["number"] == "R-000001"
    assert receipt["ticket_id"] == "t-1"
    assert receipt["price"] == {"money_amount": "50.00", "money_currency": "EUR"}


def test_a_repeated_receipt_returns_the_same_receipt_from_the_200(base_url, gateway):
    client = ReceiptsClient(base_url=base_url)

    first, repeat = issue(client), issue(client)

    assert repeat == first
    assert [c["status"] for c in gateway.snapshot()["calls"]] == [201, 200]


def test_void_and_refund_succeed_and_are_recorded(base_url, gateway):
    ReceiptsClient(base_url=base_url).void(
        ticket_id="t-1", reason="refund", idempotent_id="void-1", correlation_id="corr-1"
    )
    PaymentsClient(base_url=base_url).refund(
        payment_reference="t-1", reason="refund", deduplication_id="ref-1", correlation_id="c"
    )

    snapshot = gateway.snapshot()
    assert [v["idempotent_id"] for v in snapshot["voids"]] == ["void-1"]
    assert [r["deduplication_id"] for r in snapshot["refunds"]] == ["ref-1"]


def test_an_appended_row_is_listed_by_rows(base_url):
    client = SpreadsheetsClient(base_url=base_url)

    client.append_row(sheet="tickets-to-print", columns=["t-1", "a@b.c"], correlation_id="c")

    assert client.rows(sheet="tickets-to-print", correlation_id="c") == [["t-1", "a@b.c"]]


def test_a_500_raises_a_transient_error_with_the_http_status(base_url, gateway):
    gateway.configure({"failure_rate": 1})

    with pytest.raises(TransientError) as caught:
        issue(ReceiptsClient(base_url=base_url))

    assert caught.value.http_status == 500
    assert "injected failure" in caught.value.message
    assert caught.value.retry_after is None


def test_a_500_after_the_write_raises_a_transient_error(base_url, gateway):
    gateway.configure({"fail_after_write_rate": 1})

    with pytest.raises(TransientError) as caught:
        SpreadsheetsClient(base_url=base_url).append_row(
            sheet="tickets-to-print", columns=["t-1"], correlation_id="c"
        )

    assert caught.value.http_status == 500
    assert gateway.snapshot()["sheets"] == {"tickets-to-print": [["t-1"]]}


def test_a_down_api_raises_a_transient_error_with_503(base_url, gateway):
    gateway.configure({"down": ["payments"]})

    with pytest.raises(TransientError) as caught:
        PaymentsClient(base_url=base_url).refund(
            payment_reference="t-1", reason="r", deduplication_id="d", correlation_id="c"
        )

    assert caught.value.http_status == 503


def test_a_429_raises_a_transient_error_with_retry_after_from_the_header(base_url, gateway):
    gateway.configure({"rate_limit_rate": 1, "retry_after_seconds": 12})

    with pytest.raises(TransientError) as caught:
        issue(ReceiptsClient(base_url=base_url))

    assert caught.value.http_status == 429
    assert caught.value.retry_after == 12.0


def test_a_400_raises_a_permanent_error_keeping_the_api_error_text(base_url):
    client = ReceiptsClient(base_url=base_url)
    issue(client, "t-1", "key-1")

    with pytest.raises(PermanentError) as caught:
        issue(client, "t-2", "key-1")

    assert caught.value.http_status == 400
    assert "idempotency_key 'key-1' was already used for ticket 't-1'" in caught.value.message
    assert caught.value.permanent


def test_a_404_from_a_wrong_gateway_addr_rests_the_api_and_fails_nothing(base_url):
    client = ReceiptsClient(base_url=f"{base_url}/v1")

    with pytest.raises(Misconfigured) as caught:
        issue(client)

    assert caught.value.http_status == 404
    assert f"{base_url}/v1/receipts-api/receipts" in caught.value.message
    assert "GATEWAY_ADDR" in caught.value.message
    with pytest.raises(CircuitOpen):  # the API rests at once: the tasks wait, spending nothing
        issue(client)
    # The operators' pages say why it rests.
    assert Circuit.objects.get(name="receipts").last_error == caught.value.message


def test_a_json_404_is_a_wrong_address_where_the_contract_defines_no_404():
    # As Google's APIs answer every unknown path: a JSON error body proves nothing about
    # the ticket. Issuing a receipt has no 404 in its contract.
    class NoSuchReceipt(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = json.dumps({"error": {"code": 404, "message": "Not Found"}}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NoSuchReceipt)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(Misconfigured) as caught:
            issue(ReceiptsClient(base_url=base))
    finally:
        server.shutdown()
        server.server_close()

    assert caught.value.http_status == 404
    assert f"{base}/receipts-api/receipts" in caught.value.message
    assert "GATEWAY_ADDR" in caught.value.message
    assert not caught.value.permanent


def test_a_refused_connection_fails_the_task_or_keeps_calling():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: the connection is refused.
    client = ReceiptsClient(base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(TransientError) as caught:
        issue(client)

    assert f"http://127.0.0.1:{port}/receipts-api/receipts" in caught.value.message
    assert "connection refused; check GATEWAY_ADDR" in caught.value.message
    assert caught.value.http_status is None
    with pytest.raises(CircuitOpen):
        issue(client)


def test_a_read_timeout_raises_a_transient_error(base_url, gateway):
    gateway.configure({"latency_ms": 5000})
    client = ReceiptsClient(base_url=base_url)
    client.timeout = (3.0, 0.05)

    with pytest.raises(TransientError) as caught:
        issue(client)

    assert "timed out" in caught.value.message


def test_the_correlation_id_reaches_the_gateway_on_every_api(base_url, gateway):
    receipts = ReceiptsClient(base_url=base_url)
    sheets = SpreadsheetsClient(base_url=base_url)
    receipts.issue(
        ticket_id="t-1",
        amount="50.00",
        currency="EUR",
        idempotency_key="k",
        correlation_id="corr-receipt",
    )
    sheets.append_row(sheet="tickets-to-print", columns=["t-1"], correlation_id="corr-row")
    sheets.rows(sheet="tickets-to-print", correlation_id="corr-read")
    receipts.void(ticket_id="t-1", reason="r", idempotent_id="v", correlation_id="corr-void")
    PaymentsClient(base_url=base_url).refund(
        payment_reference="t-1", reason="r", deduplication_id="d", correlation_id="corr-refund"
    )

    snapshot = gateway.snapshot()
    assert [c["correlation_id"] for c in snapshot["calls"]] == [
        "corr-receipt",
        "corr-row",
        "corr-read",
        "corr-void",
        "corr-refund",
    ]
    assert snapshot["receipts"][0]["correlation_id"] == "corr-receipt"
    assert snapshot["sheet_rows"]["tickets-to-print"][0]["correlation_id"] == "corr-row"
    assert snapshot["voids"][0]["correlation_id"] == "corr-void"
    assert snapshot["refunds"][0]["correlation_id"] == "corr-refund"


def test_an_empty_correlation_id_sends_no_header(base_url, gateway):
    SpreadsheetsClient(base_url=base_url).rows(sheet="s", correlation_id="")

    assert gateway.snapshot()["calls"][0]["correlation_id"] is None


def test_retry_after_reads_seconds_and_http_dates():
    in_a_minute = http_date((timezone.now() + timedelta(seconds=60)).timestamp())

    assert retry_after_seconds("12") == 12.0
    assert 55 <= (retry_after_seconds(in_a_minute) or 0) <= 60
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_retry_after_takes_a_date_in_minus_0000_as_utc():
    in_a_minute = http_date((timezone.now() + timedelta(seconds=60)).timestamp())
    unzoned = in_a_minute.replace("GMT", "-0000")

    assert 55 <= (retry_after_seconds(unzoned) or 0) <= 60


def test_a_success_whose_body_is_not_json_is_a_transient_error():
    import http.server
    import threading

    class ProxyPage(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = b"<html>maintenance</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), ProxyPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ReceiptsClient(base_url=f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(TransientError, match="does not prove the effect") as caught:
            client.issue(
                ticket_id="t-1",
                amount="1.00",
                currency="EUR",
                idempotency_key="k",
                correlation_id="c",
            )
    finally:
        server.shutdown()
        server.server_close()

    assert caught.value.http_status == 200


class TricklingServer:
    """Answers 200 and then sends its body one byte at a time, each well inside a read
    timeout: per-read timeouts never fire, and the call would last for ever."""

    def __init__(self, *, head_too: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.head_too = head_too
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
            )
            data = head + b" " * 500 if self.head_too else b" " * 500
            if not self.head_too:
                conn.sendall(head)
            for byte in data:
                if self.stop.wait(0.1):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("head_too", [False, True], ids=["body", "head"])
@override_settings(OUTBOX={"CALL_SECONDS": 1.0})
def test_a_trickling_api_is_cut_off_at_the_calls_total_deadline(head_too):
    server = TricklingServer(head_too=head_too)
    try:
        with pytest.raises(TransientError, match=r"did not finish within its 1\.0s deadline"):
            SpreadsheetsClient(base_url=server.url).rows(sheet="s", correlation_id="c")
    finally:
        server.close()


class ScriptedServer:
    """Answers every request with one fixed status, headers and body (after the answers
    queued in `first`, one per request); records what came."""

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        seen: list[tuple[str, str]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                seen.append((self.command, self.path))
                target = (
                    first.pop(0) if first else answers.get(self.path, (status, body, headers or {}))
                )
                self.send_response(target[0])
                for name, value in target[2].items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(target[1])))
                self.end_headers()
                self.wfile.write(target[1])

            do_GET = do_PUT = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        answers: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.answers = answers
        first: list[tuple[int, bytes, dict[str, str]]] = []
        self.first = first
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers: list[ScriptedServer] = []

    def start(status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        server = ScriptedServer(status, body, headers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


MAINTENANCE = b"<html><body><h1>Down for maintenance</h1></body></html>"


@pytest.mark.parametrize("call", ["void", "refund", "append"])
def test_a_proxys_200_html_page_is_never_recorded_as_done(scripted, call):
    server = scripted(200, MAINTENANCE, {"Content-Type": "text/html"})
    calls = {
        "void": lambda: ReceiptsClient(base_url=server.url).void(
            ticket_id="t-1", reason="r", idempotent_id="k", correlation_id="c"
        ),
        "refund": lambda: PaymentsClient(base_url=server.url).refund(
            payment_reference="t-1", reason="r", deduplication_id="k", correlation_id="c"
        ),
        "append": lambda: SpreadsheetsClient(base_url=server.url).append_row(
            sheet="tickets-to-print", columns=["t-1"], correlation_id="c"
        ),
    }

    with pytest.raises(TransientError) as caught:
        calls[call]()

    assert caught.value.reply == ANSWERED
    assert caught.value.http_status == 200
    assert "Down for maintenance" in caught.value.message


def test_a_redirect_on_an_append_is_not_followed_and_rests_the_api(scripted):
    server = scripted(301, b"", {"Location": "https://moved.example.com/rows"})
    client = SpreadsheetsClient(base_url=server.url)

    with pytest.raises(Misconfigured) as caught:
        client.append_row(sheet="tickets-to-print", columns=["t-1"], correlation_id="c")

    # requests would have turned the POST into a GET of the rows, answered 200.
    assert server.seen == [("POST", "/spreadsheets-api/sheets/tickets-to-print/rows")]
    assert "https://moved.example.com/rows" in caught.value.message
    assert f"{server.url}/spreadsheets-api/sheets/tickets-to-print/rows" in caught.value.message
    with pytest.raises(CircuitOpen):
        client.append_row(sheet="tickets-to-print", columns=["t-1"], correlation_id="c")


def test_a_redirects_location_reaches_the_error_without_its_secrets(scripted):
    # The error is stored on the task and its attempt, and logged.
    location = "https://ops:hunter2@moved.example.com/rows?token=tok-secret&sig=sig-secret"
    server = scripted(302, b"", {"Location": location})

    with pytest.raises(Misconfigured) as caught:
        SpreadsheetsClient(base_url=server.url).append_row(
            sheet="tickets-to-print", columns=["t-1"], correlation_id="c"
        )

    assert "https://moved.example.com/rows?token=[hidden]&sig=[hidden]" in caught.value.message
    for secret in ("ops:", "hunter2", "tok-secret", "sig-secret"):
        assert secret not in caught.value.message


def test_a_read_follows_a_redirect_on_its_own_host_only(scripted):
    server = scripted(302, b"", {"Location": "/elsewhere"})
    server.answers["/elsewhere"] = (200, b'{"rows": [["t-1"]]}', {"Content-Type": JSON_TYPE})

    rows = SpreadsheetsClient(base_url=server.url).rows(sheet="s", correlation_id="c")

    assert rows == [["t-1"]]
    other = scripted(302, b"", {"Location": "https://moved.example.com/rows"})
    with pytest.raises(Misconfigured, match=r"moved\.example\.com"):
        SpreadsheetsClient(base_url=other.url).rows(sheet="s", correlation_id="c")


def test_a_proxys_504_is_a_call_that_got_no_answer(scripted):
    server = scripted(504, b"<html>Gateway Time-out</html>", {"Content-Type": "text/html"})

    with pytest.raises(TransientError) as caught:
        SpreadsheetsClient(base_url=server.url).append_row(
            sheet="s", columns=["t-1"], correlation_id="c"
        )

    assert caught.value.reply == NO_ANSWER


def test_a_timeout_is_no_answer_and_a_refused_connection_sent_nothing(base_url, gateway):
    gateway.configure({"latency_ms": 5000})
    client = SpreadsheetsClient(base_url=base_url)
    client.timeout = (3.0, 0.05)
    with pytest.raises(TransientError) as timed_out:
        client.append_row(sheet="s", columns=["t-1"], correlation_id="c")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError) as refused:
        SpreadsheetsClient(base_url=f"http://127.0.0.1:{port}").append_row(
            sheet="s", columns=["t-1"], correlation_id="c"
        )

    assert timed_out.value.reply == NO_ANSWER
    assert refused.value.reply == NOT_SENT


JSON_TYPE = "application/json"


def test_a_sheet_read_that_got_no_answer_leaves_no_write_to_wait_for(base_url, gateway):
    gateway.configure({"latency_ms": 5000})
    client = SpreadsheetsClient(base_url=base_url)
    client.timeout = (3.0, 0.05)

    with pytest.raises(TransientError) as caught:
        client.rows(sheet="s", correlation_id="c")

    assert caught.value.reply == ""


ROWS = (200, b'{"rows": [["t-1"]]}', {"Content-Type": JSON_TYPE})
ANSWERED_500 = (500, b'{"error": "busy"}', {"Content-Type": JSON_TYPE})


def test_a_read_answered_500_is_asked_again_once_within_the_try(scripted):
    # The sheet append's retry reads before it writes: one unlucky read must not cost the
    # task a whole backoff.
    server = scripted(*ROWS)
    server.first.append(ANSWERED_500)

    rows = SpreadsheetsClient(base_url=server.url).rows(sheet="s", correlation_id="c")

    assert rows == [["t-1"]]
    assert len(server.seen) == 2


def test_a_read_that_fails_twice_is_the_tries_transient_error(scripted):
    server = scripted(*ANSWERED_500)

    with pytest.raises(TransientError) as caught:
        SpreadsheetsClient(base_url=server.url).rows(sheet="s", correlation_id="c")

    assert caught.value.http_status == 500
    assert len(server.seen) == 2


def test_a_read_told_to_wait_by_retry_after_is_not_asked_again(scripted):
    server = scripted(*ROWS)
    server.first.append((429, b"", {"Retry-After": "7"}))

    with pytest.raises(TransientError) as caught:
        SpreadsheetsClient(base_url=server.url).rows(sheet="s", correlation_id="c")

    assert caught.value.retry_after == 7.0
    assert len(server.seen) == 1


def test_a_write_answered_500_is_never_sent_again_within_the_try(scripted):
    server = scripted(200, b'{"sheet": "s"}', {"Content-Type": JSON_TYPE})
    server.first.append(ANSWERED_500)

    with pytest.raises(TransientError):
        SpreadsheetsClient(base_url=server.url).append_row(
            sheet="s", columns=["t-1"], correlation_id="c"
        )

    assert server.seen == [("POST", "/spreadsheets-api/sheets/s/rows")]


def test_calls_start_no_thread_each_for_their_deadlines(base_url, monkeypatch):
    client = SpreadsheetsClient(base_url=base_url)
    client.append_row(sheet="tickets-to-print", columns=["t-0"], correlation_id="c")
    started: list[threading.Thread] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    for n in range(1, 11):
        client.append_row(sheet="tickets-to-print", columns=[f"t-{n}"], correlation_id="c")

    # A thread per call (a Timer for each deadline) was a third of the client's CPU time. (Only
    # the client's threads count: the test server's are its own business.)
    ours = [t for t in started if isinstance(t, threading.Timer) or t.name.startswith("gateway")]
    assert ours == []


def test_a_proxy_named_in_the_environment_carries_the_calls(scripted, monkeypatch):
    proxy = scripted(200, b'{"rows": [["t-1"]]}', {"Content-Type": "application/json"})
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    call_environment.cache_clear()
    try:
        rows = SpreadsheetsClient(base_url="http://gateway.invalid").rows(
            sheet="s", correlation_id="c"
        )
    finally:
        call_environment.cache_clear()

    assert rows == [["t-1"]]
    assert proxy.seen == [("GET", "http://gateway.invalid/spreadsheets-api/sheets/s/rows")]


def test_the_environment_is_read_once_per_origin_not_per_call(base_url, monkeypatch):
    reads: list[str] = []
    read = requests.utils.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return read(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.utils, "get_environ_proxies", counted)
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    call_environment.cache_clear()
    client = SpreadsheetsClient(base_url=base_url)
    for n in range(5):
        client.append_row(sheet="tickets-to-print", columns=[f"t-{n}"], correlation_id="c")

    # Scanning os.environ twice per call was a quarter of the client's CPU per call.
    assert len(reads) == 1
