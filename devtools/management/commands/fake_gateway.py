"""`manage.py fake_gateway`: serve the in-memory Receipts, Payments and Spreadsheets APIs."""

from __future__ import annotations

import threading
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from devtools.fake_gateway import (
    APIS,
    ConfigError,
    FakeGateway,
    FakeGatewayServer,
    FaultConfig,
    load_state,
    save_state,
)


class Command(BaseCommand):
    help = (
        "Serve a fake gateway (Receipts, Payments and Spreadsheets APIs) with in-memory state "
        "and optional failure injection. Inspect it at /fake-gateway/state, reset it with "
        "POST /fake-gateway/reset, change failures at run time with POST /fake-gateway/control."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1)."
        )
        parser.add_argument(
            "--port", type=int, default=8081, help="Port to listen on; 0 picks a free one."
        )
        parser.add_argument(
            "--seed", type=int, help="Seed of the random source that decides injected failures."
        )
        parser.add_argument(
            "--failure-rate",
            type=float,
            help="Share of API calls (0..1) answered 500 before doing anything.",
        )
        parser.add_argument(
            "--fail-after-write-rate",
            type=float,
            help="Share of API calls (0..1) that do their write and then answer 500.",
        )
        parser.add_argument(
            "--rate-limit-rate",
            type=float,
            help="Share of API calls (0..1) answered 429 with a Retry-After header.",
        )
        parser.add_argument(
            "--retry-after-seconds",
            type=int,
            help="Retry-After value, in whole seconds, sent with injected 429s (default 1).",
        )
        parser.add_argument(
            "--latency-ms", type=float, help="Milliseconds added to every API call."
        )
        parser.add_argument(
            "--append-latency-ms",
            type=float,
            help="Milliseconds more before a sheet append is written (a slow write that lands "
            "after the client gave up).",
        )
        parser.add_argument(
            "--garbage-bodies",
            action="store_true",
            default=None,
            help="Answer every 5xx with an HTML page holding NUL and bytes that are not UTF-8.",
        )
        parser.add_argument(
            "--fake-success-rate",
            type=float,
            help="Share of write calls (0..1) answered 200 with a maintenance page (HTML) by "
            "something in front of the API, which did nothing.",
        )
        parser.add_argument(
            "--redirect-rate",
            type=float,
            help="Share of write calls (0..1) answered 301 to another host, doing nothing.",
        )
        parser.add_argument(
            "--json-404s",
            action="store_true",
            default=None,
            help="Answer unknown paths 404 with a JSON error object (as Google's APIs do), "
            "not a plain-text page.",
        )
        parser.add_argument(
            "--down",
            action="append",
            metavar="API",
            help=f"An API answering 503 to everything: {', '.join(APIS)}. "
            "Repeat it or separate names with commas.",
        )
        parser.add_argument(
            "--state-file",
            type=Path,
            help="Keep receipts, voids, refunds and sheet rows in this JSON file across "
            "restarts (read at start, written atomically each second and at stop).",
        )
        parser.add_argument(
            "--verbose",
            action="store_true",
            help="Log every request to stderr (off by default: logging costs throughput).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = fault_config_from_options(options)
        port = options["port"]
        if not 0 <= port <= 65535:
            raise CommandError(f"--port must be between 0 and 65535, got {port}")
        gateway = FakeGateway(config)
        state_file: Path | None = options["state_file"]
        if state_file is not None:
            try:
                loaded = load_state(gateway, state_file)
            except ConfigError as exc:
                raise CommandError(f"--state-file: {exc}") from exc
            self.stdout.write(f"State from {state_file}: {loaded} receipts")
        try:
            server = FakeGatewayServer(
                gateway, host=options["host"], port=port, verbose=options["verbose"]
            )
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{port}: {exc}") from exc
        self.stdout.write(f"Fake gateway listening on {server.base_url}")
        self.stdout.write(f"Failure injection: {config.as_json()}")
        self.stdout.flush()
        saver = _Saver(gateway, state_file) if state_file is not None else None
        try:
            server.serve_forever(stop_on_signals=True)
        finally:
            if saver is not None:
                saver.stop()
        self.stdout.write("Fake gateway stopped.")


def fault_config_from_options(options: dict[str, Any]) -> FaultConfig:
    """The failure-injection config the command-line options ask for; CommandError if bad."""
    changes: dict[str, Any] = {
        name: options[name]
        for name in (
            "seed",
            "failure_rate",
            "fail_after_write_rate",
            "rate_limit_rate",
            "retry_after_seconds",
            "latency_ms",
            "append_latency_ms",
            "garbage_bodies",
            "fake_success_rate",
            "redirect_rate",
            "json_404s",
        )
        if options.get(name) is not None
    }
    if options.get("down"):
        changes["down"] = [
            name.strip() for value in options["down"] for name in value.split(",") if name.strip()
        ]
    try:
        return FaultConfig().merged(changes)
    except ConfigError as exc:
        raise CommandError(f"--{exc.field.replace('_', '-')}: {exc}") from exc


class _Saver(threading.Thread):
    """Writes the state file each second while calls come in, and once more at stop."""

    def __init__(self, gateway: FakeGateway, path: Path) -> None:
        super().__init__(name="fake-gateway-saver", daemon=True)
        self.gateway, self.path = gateway, path
        self.stopping = threading.Event()
        self.saved_at_call = -1
        self.start()

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            self.save()

    def save(self) -> None:
        calls = self.gateway.snapshot(calls=0)["stats"]["calls"]
        if calls != self.saved_at_call:
            save_state(self.gateway, self.path)
            self.saved_at_call = calls

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.save()
