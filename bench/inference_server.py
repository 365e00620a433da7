"""Serve the inference process from a settings file, for the benchmarks.

``python -m bench.inference_server SETTINGS.yaml`` loads
:class:`~services.inference.settings.InferenceSettings` (file, then ``LLMGW_*``
variables), serves until SIGTERM, and prints ``PORT <n>`` on stdout once serving.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.inference.app import build
from services.inference.settings import InferenceSettings
from services.kernel.config import load_settings
from services.kernel.logs import configure_logging
from services.kernel.server import KernelServer, serve


def main(argv: list[str]) -> int:
    settings = load_settings(InferenceSettings, path=Path(argv[0]), env=os.environ)
    configure_logging("inference", settings.logging.level)
    registry = CollectorRegistry()

    def announce(server: KernelServer, _metrics: object) -> None:
        print(f"PORT {server.port}", flush=True)

    asyncio.run(serve(build(settings, registry), settings, on_serving=announce))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
