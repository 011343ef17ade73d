"""The fake gateway over HTTP: its APIs served by the devtools' asyncio HTTP/1.1 server."""

from __future__ import annotations

import asyncio
import sys

from devtools.fake_gateway.apis import INSPECTION_PREFIX, FakeGateway
from devtools.http_server import HttpServer, Reply, Request
from outbox.correlation import HEADER as CORRELATION_HEADER


class FakeGatewayServer(HttpServer):
    """Serves one `FakeGateway`, waiting out its injected latency without blocking others."""

    def __init__(
        self,
        gateway: FakeGateway,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(self._answer, host=host, port=port)
        self.gateway = gateway
        self.verbose = verbose

    async def _answer(self, request: Request) -> Reply:
        method, target, path = request.method, request.target, request.path
        correlation_id = request.headers.get(CORRELATION_HEADER.lower())
        traceparent = request.headers.get("traceparent")
        delay = self.gateway.latency_seconds(path, method)
        if delay:
            await asyncio.sleep(delay)
        if path.startswith(INSPECTION_PREFIX):
            # A state dump can be megabytes of JSON: build it off the event loop.
            reply = await asyncio.to_thread(
                self.gateway.handle, method, target, request.body, correlation_id, traceparent
            )
        else:
            reply = self.gateway.handle(method, target, request.body, correlation_id, traceparent)
        if self.verbose:
            print(
                f"{method} {target} {reply.status} correlation_id={correlation_id}",
                file=sys.stderr,
                flush=True,
            )
        return reply


def start_in_thread(
    gateway: FakeGateway | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    verbose: bool = False,
) -> tuple[FakeGatewayServer, str]:
    """Serve `gateway` (a fresh one by default) from a daemon thread; returns (server, base_url).

    Port 0 picks a free port. Call `server.stop()` when done.
    """
    server = FakeGatewayServer(gateway or FakeGateway(), host=host, port=port, verbose=verbose)
    server.start_in_thread(name="fake-gateway")
    return server, server.base_url
