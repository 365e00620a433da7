"""TLS and mTLS on the listener and to upstreams, with certificate files rotated live."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from grpc import aio

from gateway.settings import HealthCheckSettings, ListenerSettings, ListenerTls, UpstreamTls
from tests.unit.gateway.certs import Authority
from tests.unit.gateway.conftest import (
    Started,
    StartGateway,
    StartReplicas,
    cluster,
    complete,
    eventually,
    gateway_settings,
)
from tests.unit.gateway.raw_upstream import RawReplica


def _listener(tmp_path: Path, *, mtls: bool) -> tuple[Authority, Authority, ListenerSettings]:
    servers = Authority(tmp_path, "server CA")
    clients = Authority(tmp_path, "client CA")
    server = servers.issue("gateway")
    tls = ListenerTls(
        cert_file=server.cert_file,
        key_file=server.key_file,
        client_ca_file=clients.cert_file if mtls else None,
    )
    return servers, clients, ListenerSettings(tls=tls)


async def test_tls_listener_serves_tls_clients_only(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    servers, _, listener = _listener(tmp_path, mtls=False)
    settings = gateway_settings(
        cluster(r.address for r in replicas), tmp_path / "a.log", listener=listener
    )
    running = await start_gateway(
        settings, channel_credentials=grpc.ssl_channel_credentials(servers.cert)
    )
    assert await running.unary()(b"x", timeout=5) == b"a:x"
    async with aio.insecure_channel(running.address) as plaintext:
        with pytest.raises(aio.AioRpcError) as caught:
            await complete(plaintext)(b"x", timeout=2)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_mtls_listener_requires_a_client_certificate_from_its_ca(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    servers, clients, listener = _listener(tmp_path, mtls=True)
    settings = gateway_settings(
        cluster(r.address for r in replicas), tmp_path / "a.log", listener=listener
    )
    client = clients.issue("billing-service")
    running = await start_gateway(
        settings,
        channel_credentials=grpc.ssl_channel_credentials(servers.cert, client.key, client.cert),
    )
    assert await running.unary()(b"x", timeout=5) == b"a:x"
    stranger = Authority(tmp_path, "stranger CA").issue("intruder")
    for credentials in (
        grpc.ssl_channel_credentials(servers.cert),
        grpc.ssl_channel_credentials(servers.cert, stranger.key, stranger.cert),
    ):
        async with aio.secure_channel(running.address, credentials) as channel:
            with pytest.raises(aio.AioRpcError) as caught:
                await complete(channel)(b"x", timeout=2)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_listener_certificate_is_reloaded_when_its_files_change(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    _, _, listener = _listener(tmp_path, mtls=False)
    settings = gateway_settings(
        cluster(r.address for r in replicas), tmp_path / "a.log", listener=listener
    )
    running = await start_gateway(settings)
    (tmp_path / "rotated").mkdir()
    rotated_ca = Authority(tmp_path / "rotated", "rotated CA")
    rotated = rotated_ca.issue("gateway-2")
    assert listener.tls is not None
    _replace(listener.tls.cert_file, rotated.cert)
    _replace(listener.tls.key_file, rotated.key)
    credentials = grpc.ssl_channel_credentials(rotated_ca.cert)
    async with aio.secure_channel(running.address, credentials) as channel:
        call = complete(channel)
        assert await call(b"x", timeout=5) == b"a:x"


async def test_upstream_mtls_and_reload_of_the_upstream_ca(
    start_gateway: StartGateway, started: Started, tmp_path: Path
) -> None:
    upstream_ca = Authority(tmp_path, "upstream CA")
    gateway_ca = Authority(tmp_path, "gateway client CA")
    replica_pem = upstream_ca.issue("replica")
    replica = RawReplica("a")
    await replica.start(
        credentials=grpc.ssl_server_credentials(
            [(replica_pem.key, replica_pem.cert)],
            root_certificates=gateway_ca.cert,
            require_client_auth=True,
        )
    )
    started.replicas.append(replica)
    gateway_pem = gateway_ca.issue("gateway")
    trusted = tmp_path / "trusted-upstream-ca.pem"
    trusted.write_bytes(Authority(tmp_path, "wrong CA").cert)
    tls = UpstreamTls(
        ca_file=trusted,
        cert_file=gateway_pem.cert_file,
        key_file=gateway_pem.key_file,
        server_name="localhost",
    )
    running = await start_gateway(
        cluster(
            [replica.address],
            tls=tls,
            tls_reload_seconds=0.1,
            health_check=HealthCheckSettings(enabled=False),
            connect_timeout_seconds=0.5,
        )
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await running.unary()(b"x", timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    _replace(trusted, upstream_ca.cert)
    endpoint = running.gateway.clusters["upstream"].endpoints[0]
    first_channel = endpoint.channel
    await eventually(lambda: endpoint.channel is not first_channel)
    endpoint.ejected_until = 0.0
    assert await running.unary()(b"x", timeout=5) == b"a:x"


def _replace(path: Path, content: bytes) -> None:
    """Write ``content`` next to ``path`` and rename it over, as secret mounts do."""
    temporary = path.with_suffix(path.suffix + ".new")
    temporary.write_bytes(content)
    os.replace(temporary, path)
