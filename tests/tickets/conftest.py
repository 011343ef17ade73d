from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from devtools.fake_gateway import FakeGateway, FaultConfig, start_in_thread


@pytest.fixture
def gateway() -> FakeGateway:
    """The fake gateway's state and failure injection, seeded."""
    return FakeGateway(FaultConfig(seed=0))


@pytest.fixture
def base_url(gateway: FakeGateway) -> Iterator[str]:
    """The fake gateway served over real HTTP on a free port."""
    server, url = start_in_thread(gateway)
    yield url
    server.stop()


@pytest.fixture
def gateway_url(base_url: str) -> Iterator[str]:
    """As `base_url`, with GATEWAY_ADDR pointing at it."""
    with override_settings(GATEWAY_ADDR=base_url):
        yield base_url
