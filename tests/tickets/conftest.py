from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from tickets.fake_gateway import FakeGateway, FaultConfig, start_in_thread


@pytest.fixture
def fake_gateway() -> FakeGateway:
    return FakeGateway(FaultConfig(seed=0))


@pytest.fixture
def gateway_url(fake_gateway: FakeGateway) -> Iterator[str]:
    """The fake gateway served on a free port, with GATEWAY_ADDR pointing at it."""
    server, url = start_in_thread(fake_gateway)
    try:
        with override_settings(GATEWAY_ADDR=url):
            yield url
    finally:
        server.stop()
