"""The simulator's posting: the plan's webhooks sent as a seller sends them (signed, retried with
the same Idempotency-Key), and the service's /health check."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import requests

from devtools.sessions import thread_session
from devtools.simulation.plan import Webhook
from outbox.correlation import HEADER as CORRELATION_HEADER
from tickets.intake.signature import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(slots=True)
class PostReport:
    sent: int = 0
    accepted: int = 0
    repeats: int = 0
    retries: int = 0
    rejected: list[str] = field(default_factory=list)
    repeat_mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.repeat_mismatches


PostProgress = Callable[[int, int], None]


class WebhookPoster:
    """Posts webhooks like a seller: what does not answer 200 is sent again, same key."""

    def __init__(
        self,
        service_url: str,
        *,
        concurrency: int = 4,
        timeout: float = 30.0,
        max_tries: int = 5,
        backoff_seconds: float = 0.2,
        key: bytes | None = None,
    ) -> None:
        self.url = f"{service_url.rstrip('/')}/tickets-status"
        # The decoded WEBHOOK_SECRET: with it every post is signed as docs/SECURITY.md asks.
        self.key = key
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_tries = max_tries
        self.backoff_seconds = backoff_seconds

    def post_all(
        self, phases: Sequence[Sequence[Webhook]], on_progress: PostProgress | None = None
    ) -> PostReport:
        """Send each phase in parallel, a phase only once the previous one has answered."""
        report = PostReport()
        answers: dict[str, Any] = {}
        total = sum(len(phase) for phase in phases)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for phase in phases:
                futures = {pool.submit(self._post, webhook): webhook for webhook in phase}
                for future in as_completed(futures):
                    status, answer, tries = future.result()
                    self._record(report, answers, futures[future], status, answer, tries)
                    if on_progress is not None:
                        on_progress(report.sent, total)
        report.seconds = time.monotonic() - started
        return report

    def _record(
        self,
        report: PostReport,
        answers: dict[str, Any],
        webhook: Webhook,
        status: int | None,
        answer: Any,
        tries: int,
    ) -> None:
        report.sent += 1
        report.retries += tries - 1
        report.repeats += webhook.repeat
        key = webhook.idempotency_key
        if status != 200:
            report.rejected.append(f"{key}: {answer}")
            return
        report.accepted += 1
        if not webhook.repeat:
            answers[key] = answer
        elif key in answers and answers[key] != answer:
            report.repeat_mismatches.append(
                f"{key}: first answer {answers[key]!r}, repeat answered {answer!r}"
            )

    def _post(self, webhook: Webhook) -> tuple[int | None, Any, int]:
        """(status, parsed answer or error text, tries). Never raises."""
        problem = ""
        for attempt in range(1, self.max_tries + 1):
            # Signed per attempt: a retry is the same message (same id), sent at a new time.
            body, headers = webhook_request(webhook, self.key, now=time.time())
            try:
                response = thread_session().post(
                    self.url, data=body, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                problem = f"{exc.__class__.__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return 200, _json_or_text(response), attempt
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in _TRANSIENT_STATUSES:
                    return response.status_code, problem, attempt
            if attempt < self.max_tries:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        return None, f"no 200 after {self.max_tries} tries; last: {problem}", self.max_tries


def webhook_request(
    webhook: Webhook, key: bytes | None, *, now: float
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of one post; signed (Standard Webhooks) when `key` is given.

    The body is serialized here, once, because the signature covers its exact bytes. The
    message id is the Idempotency-Key's: a repeat is the same message sent again, which the
    service answers from its first answer either way.
    """
    body = json.dumps(webhook.body).encode()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": webhook.idempotency_key,
        CORRELATION_HEADER: webhook.correlation_id,
    }
    if key is not None:
        webhook_id = webhook.idempotency_key
        timestamp = int(now)
        headers[ID_HEADER] = webhook_id
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(key, webhook_id=webhook_id, timestamp=timestamp, body=body)
    return body, headers


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def service_problem(service_url: str, *, timeout: float = 5.0) -> str | None:
    """Why the service cannot take webhooks (its /health does not answer 200), or None."""
    url = f"{service_url.rstrip('/')}/health"
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return f"GET {url} failed: {exc.__class__.__name__}: {exc}"
    if response.status_code != 200:
        return f"GET {url} answered {response.status_code}: {response.text[:200]}"
    return None
