from __future__ import annotations

# The fake gateway's fixtures are shared with the tickets' tests, which call it over HTTP.
from tests.tickets.conftest import base_url, gateway, gateway_url

__all__ = ["base_url", "gateway", "gateway_url"]
