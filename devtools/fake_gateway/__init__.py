"""An in-memory stand-in for the gateway's Receipts, Payments and Spreadsheets APIs.

Split by job: `faults` (what goes wrong on purpose), `apis` (the APIs' emulation and state),
`wire` (parsing requests, shaping records), `persistence` (the state file), `server`
(carrying them over HTTP). Run it with `python manage.py fake_gateway`, or in-process
with `start_in_thread()`; docs/FAKE_GATEWAY.md tells how.
"""

from __future__ import annotations

from devtools.fake_gateway.apis import FakeGateway, GatewayState
from devtools.fake_gateway.faults import APIS, ConfigError, FaultConfig
from devtools.fake_gateway.persistence import load_state, save_state
from devtools.fake_gateway.server import FakeGatewayServer, start_in_thread
from devtools.fake_gateway.wire import BadRequest
from devtools.http_server import Reply, error_reply, json_reply

__all__ = [
    "APIS",
    "BadRequest",
    "ConfigError",
    "FakeGateway",
    "FakeGatewayServer",
    "FaultConfig",
    "GatewayState",
    "Reply",
    "error_reply",
    "json_reply",
    "load_state",
    "save_state",
    "start_in_thread",
]
