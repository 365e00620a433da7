"""The gateway fixtures of the unit tests, plus helpers to run gateways with limit filters."""

from __future__ import annotations

from tests.unit.gateway.conftest import start_gateway, start_replicas, started

__all__ = ["start_gateway", "start_replicas", "started"]
