"""The AWS-backed sinks' clients, open for one test as a session holds them for one sweep."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rotator.aws import Aws, Clients


@pytest.fixture
async def clients(aws_env: str) -> AsyncIterator[Clients]:
    """Clients on the (freshly reset) moto server, closed when the test ends."""
    async with Clients(Aws()) as opened:
        yield opened
