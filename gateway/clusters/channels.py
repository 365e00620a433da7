"""Channels to a cluster's endpoints: options, plaintext or (m)TLS credentials, reloads."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
from grpc import aio

from gateway.settings import ClusterSettings, UpstreamTls
from services.kernel.config import ServerSettings

FileSignature = tuple[tuple[int, int], ...]


def file_signature(paths: tuple[Path | None, ...]) -> FileSignature:
    """(mtime, size) of each file; changes when any of them is rewritten."""
    signature = []
    for path in paths:
        if path is None:
            continue
        try:
            stat = os.stat(path)
        except OSError:
            signature.append((-1, -1))
        else:
            signature.append((stat.st_mtime_ns, stat.st_size))
    return tuple(signature)


class ChannelFactory:
    """Makes the channels of one cluster, and notices when its TLS files change."""

    def __init__(self, settings: ClusterSettings, server: ServerSettings) -> None:
        self._tls = settings.tls
        self._options: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", server.max_receive_message_bytes),
            ("grpc.max_send_message_length", server.max_send_message_bytes),
            ("grpc.keepalive_time_ms", int(server.keepalive_time_seconds * 1000)),
            ("grpc.keepalive_timeout_ms", int(server.keepalive_timeout_seconds * 1000)),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", int(settings.reconnect_backoff_max_seconds * 1000)),
        ]
        if self._tls is not None and self._tls.server_name:
            self._options.append(("grpc.ssl_target_name_override", self._tls.server_name))
        self._signature: FileSignature = ()
        self._credentials = self._load()

    def create(self, address: str) -> aio.Channel:
        """A new channel to ``address`` with the current credentials."""
        if self._credentials is None:
            return aio.insecure_channel(address, options=self._options)
        return aio.secure_channel(address, self._credentials, options=self._options)

    def reload_if_changed(self) -> bool:
        """Re-read the TLS files if they changed; True when channels should be rebuilt."""
        if self._tls is None or file_signature(_paths(self._tls)) == self._signature:
            return False
        try:
            self._credentials = self._load()
        except OSError:
            return False  # half-written files: try again next time
        return True

    def _load(self) -> grpc.ChannelCredentials | None:
        tls = self._tls
        if tls is None:
            return None
        self._signature = file_signature(_paths(tls))
        return grpc.ssl_channel_credentials(
            root_certificates=_read(tls.ca_file),
            private_key=_read(tls.key_file),
            certificate_chain=_read(tls.cert_file),
        )


def _paths(tls: UpstreamTls) -> tuple[Path | None, ...]:
    return (tls.ca_file, tls.cert_file, tls.key_file)


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()
