"""TLS of the gateway's listener, with certificates re-read when their files change.

gRPC asks :class:`ReloadingServerCertificates` before each TLS handshake whether
the certificate configuration changed; it compares the files' modification time
and size with those last loaded, so a rotated certificate (cert-manager, a
mounted Kubernetes secret) is used by the next connection without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc

from gateway.clusters.channels import FileSignature, file_signature
from gateway.settings import ListenerTls

_log = logging.getLogger("llmgw.gateway.tls")


class ReloadingServerCertificates:
    """The certificate configuration fetcher of the listener (called from gRPC threads)."""

    def __init__(self, tls: ListenerTls) -> None:
        self._tls = tls
        self._signature: FileSignature = ()
        self.initial = self._load()

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed, else None (keep the current one)."""
        if file_signature(self._paths()) == self._signature:
            return None
        try:
            configuration = self._load()
        except (OSError, ValueError):
            return None  # half-written files: keep serving the previous certificate
        _log.info("listener certificates reloaded")
        return configuration

    def _paths(self) -> tuple[Path | None, ...]:
        tls = self._tls
        return (tls.cert_file, tls.key_file, tls.client_ca_file)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        tls = self._tls
        signature = file_signature(self._paths())
        pair = (tls.key_file.read_bytes(), tls.cert_file.read_bytes())
        roots = tls.client_ca_file.read_bytes() if tls.client_ca_file is not None else None
        configuration = grpc.ssl_server_certificate_configuration([pair], roots)
        self._signature = signature
        return configuration


def listener_credentials(tls: ListenerTls) -> grpc.ServerCredentials:
    """Server credentials for ``tls`` that follow changes of its files."""
    certificates = ReloadingServerCertificates(tls)
    # gRPC accepts None from the fetcher ("unchanged"); its type stubs do not say so.
    fetcher = cast("Callable[[], grpc.ServerCertificateConfiguration]", certificates)
    return grpc.dynamic_ssl_server_credentials(
        certificates.initial,
        fetcher,
        require_client_authentication=tls.client_ca_file is not None,
    )
