"""Serve a gateway from a settings file, for the benchmarks, with the bench's own filters.

``python -m bench.gateway_server SETTINGS.yaml`` loads
:class:`~gateway.settings.GatewaySettings` (file, then ``LLMGW_*`` variables), offers
the ``bench_caller`` filter besides the built-in ones, serves until SIGTERM, and
prints ``PORT <n>`` on stdout once serving.

``bench_caller`` names every call's caller (API key ``bench-key`` of project
``bench``) without checking a credential; the security benchmark uses it when
the gateway has no authentication filter to put in its place.
"""

from __future__ import annotations

import asyncio
import os
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.edge import Gateway
from gateway.filters.base import Call, FilterContext, FilterPlugin, GatewayFilter
from gateway.settings import GatewaySettings
from services.kernel.config import Section, load_settings
from services.kernel.identity import API_KEY_ACTOR, Principal
from services.kernel.logs import configure_logging
from services.kernel.server import KernelServer, serve

BENCH_PRINCIPAL = Principal(actor_type=API_KEY_ACTOR, actor_id="bench-key", project_id="bench")


class BenchCallerConfig(Section):
    """No settings."""


class BenchCaller(GatewayFilter):
    """Names :data:`BENCH_PRINCIPAL` as the caller of every call."""

    async def on_request(self, call: Call) -> None:
        call.principal = BENCH_PRINCIPAL
        call.key_id = BENCH_PRINCIPAL.actor_id


def _build_caller(config: BenchCallerConfig, context: FilterContext) -> BenchCaller:
    return BenchCaller()


bench_caller = FilterPlugin(config_model=BenchCallerConfig, build=_build_caller)
FILTERS = (EntryPoint("bench_caller", f"{__name__}:bench_caller", "llmgw.gateway_filters"),)


def main(argv: list[str]) -> int:
    settings = load_settings(GatewaySettings, path=Path(argv[0]), env=os.environ)
    configure_logging("gateway", settings.logging.level)
    registry = CollectorRegistry()
    gateway = Gateway(settings, registry, available_filters=FILTERS)

    def announce(server: KernelServer, _metrics: object) -> None:
        print(f"PORT {server.port}", flush=True)

    asyncio.run(serve(gateway.app(), settings, on_serving=announce))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
