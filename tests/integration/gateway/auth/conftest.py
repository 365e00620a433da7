"""A raw inference replica for the secured gateways to forward to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.gateway.raw_upstream import RawReplica


@pytest.fixture
async def upstream() -> AsyncIterator[RawReplica]:
    replica = RawReplica("a")
    await replica.start()
    yield replica
    await replica.stop()
