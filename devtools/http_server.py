"""A small keep-alive HTTP/1.1 server on asyncio: the fake gateway's and the benchmark's.

Standard library only, and fast enough never to be the bottleneck of what it serves: about 2.5
times the throughput of a `ThreadingHTTPServer` on this machine (docs/FAKE_GATEWAY.md has the
numbers). Bodies need a Content-Length (no chunked requests); answers always carry one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NamedTuple

MAX_BODY_BYTES = 1_000_000
MAX_HEAD_BYTES = 64 * 1024


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


def json_reply(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), headers)


def error_reply(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return json_reply(status, {"error": message}, headers)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


# Answers one request. A coroutine, so it may wait (injected latency) without blocking others.
Handler = Callable[[Request], Awaitable[Reply]]


class HttpServer:
    """Serves `handler` from an asyncio event loop, one task per connection.

    The socket is bound at construction, so the port (and any bind error) is known at once.
    `serve_forever()` blocks its thread until `stop()` is called from another thread.
    """

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family, backlog=1024)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.started = threading.Event()
        self.stopped = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        host, port = self.address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def serve_forever(self, *, stop_on_signals: bool = False) -> None:
        """Serve until `stop()`; with `stop_on_signals` (main thread only), SIGINT/SIGTERM too."""
        try:
            asyncio.run(self._serve(stop_on_signals))
        finally:
            self._socket.close()
            self.stopped.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, drop open connections and wait for the serving thread to finish."""
        loop, stop_requested = self._loop, self._stop_requested
        if loop is None or stop_requested is None:
            self._socket.close()
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(stop_requested.set)
        self.stopped.wait(timeout)

    def start_in_thread(self, name: str = "http-server") -> None:
        """Serve from a daemon thread; returns once the server accepts connections."""
        thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        thread.start()
        if not self.started.wait(10):
            self.stop()
            raise RuntimeError(f"{name} did not start within 10 s")

    async def _serve(self, stop_on_signals: bool) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        if stop_on_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(signum, self._stop_requested.set)
        server = await asyncio.start_server(
            self._connection, sock=self._socket, limit=MAX_HEAD_BYTES
        )
        self.started.set()
        try:
            await self._stop_requested.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop() cancels open keep-alive connections; ending here is the point, and
            # re-raising would make asyncio log a traceback per connection.
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; False when the connection should close."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                await _send(writer, error_reply(400, "incomplete request head"), close=True)
            return False
        except asyncio.LimitOverrunError:
            await _send(writer, error_reply(431, "request head too large"), close=True)
            return False
        parsed = _parse_head(head)
        if isinstance(parsed, Reply):
            await _send(writer, parsed, close=True)
            return False
        method, target, version, headers = parsed
        connection = headers.get("connection", "").lower()
        keep_alive = (
            "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
        )
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await _send(writer, error_reply(411, "send the body with a Content-Length"), close=True)
            return False
        length_text = headers.get("content-length", "0")
        length = int(length_text) if length_text.isdigit() else -1
        if not 0 <= length <= MAX_BODY_BYTES:
            reply = error_reply(413, f"Content-Length must be a number from 0 to {MAX_BODY_BYTES}")
            await _send(writer, reply, close=True)
            return False
        if length and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(length) if length else b""
        try:
            reply = await self.handler(Request(method, target, headers, body))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            reply = error_reply(500, f"server bug: {exc.__class__.__name__}: {exc}")
        await _send(writer, reply, close=not keep_alive)
        return keep_alive


async def _send(writer: asyncio.StreamWriter, reply: Reply, *, close: bool) -> None:
    head = [
        f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
    ]
    head.extend(f"{name}: {value}" for name, value in reply.headers)
    if close:
        head.append("Connection: close")
    # One write per answer: the head and the body leave in the same segment.
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
    await writer.drain()


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]] | Reply:
    """(method, target, version, lower-cased headers) of a request head, or the 400 to send."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return error_reply(400, f"bad request line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            return error_reply(400, f"bad header line {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers
