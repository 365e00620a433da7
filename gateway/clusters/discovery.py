"""Where a cluster's endpoints come from: a static list, or a DNS name's addresses."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from gateway.settings import ClusterSettings, DnsDiscovery

Resolver = Callable[[DnsDiscovery], Awaitable[list[str]]]
"""Resolves a DNS discovery to ``host:port`` addresses (tests pass their own)."""

_FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6, "any": socket.AF_UNSPEC}


async def resolve_dns(dns: DnsDiscovery) -> list[str]:
    """Every address ``dns.name`` resolves to (one per A/AAAA record), sorted, with the port.

    Raises ``OSError`` when the name does not resolve.
    """
    infos = await asyncio.get_running_loop().getaddrinfo(
        dns.name, dns.port, family=_FAMILIES[dns.family], type=socket.SOCK_STREAM
    )
    hosts = {str(info[4][0]) for info in infos}
    return sorted(f"[{host}]:{dns.port}" if ":" in host else f"{host}:{dns.port}" for host in hosts)


async def initial_addresses(settings: ClusterSettings, resolver: Resolver) -> list[str]:
    """The addresses a cluster starts with; an unresolvable name gives none (yet)."""
    if settings.dns is None:
        return list(settings.endpoints)
    try:
        return await resolver(settings.dns)
    except OSError:
        return []
