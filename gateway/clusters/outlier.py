"""Passive outlier detection: eject endpoints whose calls keep failing, readmit them later."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from gateway.clusters.endpoint import Endpoint
from gateway.settings import OutlierDetectionSettings

_log = logging.getLogger("llmgw.gateway.outlier")


class OutlierDetector:
    """Counts consecutive failures per endpoint and ejects it at the threshold.

    An ejected endpoint is readmitted when its ejection time has passed (balancers
    skip it until then); each further ejection without a success between doubles the
    time, up to the maximum.
    """

    def __init__(self, cluster: str, settings: OutlierDetectionSettings) -> None:
        self._cluster = cluster
        self._settings = settings
        self._failure_codes = frozenset(grpc.StatusCode[name] for name in settings.failure_codes)

    def record(
        self, endpoint: Endpoint, code: grpc.StatusCode, endpoints: Sequence[Endpoint], now: float
    ) -> None:
        """Account the status of one call of ``endpoint`` (``endpoints``: the cluster's)."""
        if code not in self._failure_codes:
            endpoint.consecutive_failures = 0
            if code is grpc.StatusCode.OK:
                endpoint.ejections = 0
            return
        endpoint.consecutive_failures += 1
        settings = self._settings
        if not settings.enabled or endpoint.consecutive_failures < settings.consecutive_failures:
            return
        if endpoint.ejected_until > now or not self._may_eject(endpoints, now):
            return
        endpoint.ejections += 1
        seconds = min(
            settings.base_ejection_seconds * 2 ** (endpoint.ejections - 1),
            settings.max_ejection_seconds,
        )
        endpoint.ejected_until = now + seconds
        endpoint.consecutive_failures = 0
        _log.warning(
            "endpoint ejected",
            extra={"cluster": self._cluster, "endpoint": endpoint.address, "seconds": seconds},
        )

    def _may_eject(self, endpoints: Sequence[Endpoint], now: float) -> bool:
        ejected = sum(1 for endpoint in endpoints if endpoint.ejected_until > now)
        allowed = max(1, int(len(endpoints) * self._settings.max_ejection_percent / 100))
        return ejected < allowed
