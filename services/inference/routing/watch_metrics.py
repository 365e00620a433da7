"""Prometheus metrics of the registry watch; a :class:`~.registry_watch.WatchListener`.

==============================================  =======================================
``llmgw_inference_registry_revision``           registry revision the router serves
``llmgw_inference_registry_messages_total``     stream messages by outcome: ``snapshot``,
                                                ``change`` (applied), ``skipped`` (seen before)
``llmgw_inference_registry_stream_losses_total``  streams lost, by reason (gRPC code name,
                                                ``ENDED``, ``RESYNC``, ``ERROR``)
==============================================  =======================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class RegistryWatchMetrics:
    """The registry watch metrics, registered into the process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every metric in ``registry``."""
        self.revision = Gauge(
            "llmgw_inference_registry_revision",
            "Registry revision of the routing table this replica serves.",
            registry=registry,
        )
        self.messages = Counter(
            "llmgw_inference_registry_messages_total",
            "WatchRegistry messages by outcome (snapshot, change, skipped).",
            ("outcome",),
            registry=registry,
        )
        self.stream_losses = Counter(
            "llmgw_inference_registry_stream_losses_total",
            "WatchRegistry streams lost, by reason.",
            ("reason",),
            registry=registry,
        )
        self._snapshots = self.messages.labels("snapshot")
        self._changes = self.messages.labels("change")
        self._skipped = self.messages.labels("skipped")

    def snapshot_applied(self, revision: int) -> None:
        """Count a snapshot."""
        self._snapshots.inc()

    def change_applied(self, revision: int) -> None:
        """Count an applied change."""
        self._changes.inc()

    def change_skipped(self, revision: int) -> None:
        """Count a change seen before."""
        self._skipped.inc()

    def table_published(self, revision: int) -> None:
        """Set the served revision."""
        self.revision.set(revision)

    def stream_lost(self, reason: str) -> None:
        """Count a lost stream."""
        self.stream_losses.labels(reason).inc()
