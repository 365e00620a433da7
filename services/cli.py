"""The ``llmgw`` command.

::

    llmgw run                 start every service process and watch over them
    llmgw serve NAME          serve one process (what a container runs)
    llmgw health ADDRESS      ask a server's standard health service
    llmgw services            list the installed service processes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.kernel.config import ConfigError, load_settings
from services.kernel.health_client import check_health
from services.kernel.logs import configure_logging
from services.kernel.plugins import PluginError
from services.kernel.process import service_registry
from services.kernel.server import serve
from services.runner import Runner, RunnerConfig, default_env, plan_children

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmgw`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ConfigError, PluginError) as exc:
        sys.stderr.write(f"llmgw: {exc}\n")
        return EXIT_USAGE
    return code


def _serve(args: argparse.Namespace) -> int:
    registry = service_registry()
    plugin = registry.get(args.service)
    foreign = {
        section
        for name in registry.names()
        for section in registry.get(name).settings_model.model_fields
    }
    overrides: dict[str, Any] = {"service": plugin.name, "server": {"port": plugin.default_port}}
    if args.host is not None:
        overrides["server"]["host"] = args.host
        overrides["metrics"] = {"host": args.host}
    if args.port is not None:
        overrides["server"]["port"] = args.port
    if args.metrics_port is not None:
        overrides.setdefault("metrics", {})["port"] = args.metrics_port
    settings = load_settings(
        plugin.settings_model,
        path=args.config,
        env=os.environ,
        overrides=overrides,
        foreign_sections=foreign,
    )
    configure_logging(plugin.name, settings.logging.level)
    asyncio.run(serve(plugin.build(settings), settings))
    return 0


def _run(args: argparse.Namespace) -> int:
    registry = service_registry()
    names = args.services or registry.names()
    ports = {name: registry.get(name).default_port for name in names}
    if args.base_port is not None:
        ports = {name: args.base_port + index for index, name in enumerate(sorted(names))}
    config = RunnerConfig(
        children=plan_children(names, args.host, ports),
        log_dir=args.log_dir,
        env=default_env(),
        config_file=args.config,
    )
    return asyncio.run(Runner(config, sys.stdout).run())


def _health(args: argparse.Namespace) -> int:
    status = asyncio.run(check_health(args.address, args.service, timeout=args.timeout))
    print(status)
    return 0 if status == "SERVING" else 1


def _services(_: argparse.Namespace) -> int:
    registry = service_registry()
    for name in registry.names():
        print(f"{name}\t{registry.get(name).default_port}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmgw", description="gRPC-native LLM gateway suite")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve_cmd = commands.add_parser("serve", help="serve one service process")
    serve_cmd.add_argument("service", help="service name, see `llmgw services`")
    serve_cmd.add_argument("--config", type=Path, help="YAML settings file")
    serve_cmd.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="gRPC port (default: the service's own)")
    serve_cmd.add_argument("--metrics-port", type=int, help="Prometheus port (0: any free)")
    serve_cmd.set_defaults(handler=_serve)

    run_cmd = commands.add_parser("run", help="start every service process locally")
    run_cmd.add_argument("services", nargs="*", help="only these services (default: all)")
    run_cmd.add_argument("--config", type=Path, help="YAML settings file for every process")
    run_cmd.add_argument("--host", default="127.0.0.1")
    run_cmd.add_argument("--base-port", type=int, help="first port of a block, one per service")
    run_cmd.add_argument("--log-dir", type=Path, default=Path(".llmgw/logs"))
    run_cmd.set_defaults(handler=_run)

    health_cmd = commands.add_parser("health", help="query grpc.health.v1 at ADDRESS")
    health_cmd.add_argument("address", help="host:port")
    health_cmd.add_argument("--service", default="", help="service name ('' = whole server)")
    health_cmd.add_argument("--timeout", type=float, default=2.0)
    health_cmd.set_defaults(handler=_health)

    list_cmd = commands.add_parser("services", help="list installed service processes")
    list_cmd.set_defaults(handler=_services)
    return parser


if __name__ == "__main__":
    sys.exit(main())
