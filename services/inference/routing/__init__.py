"""Routing of inference calls: resolution, strategies, retries, fallbacks, limits, cost.

:class:`Router` is the :class:`~services.inference.engine.CompletionEngine` the
servicer drives. It serves a routing table built from a
``llmgw.models.v1.RegistrySnapshot`` (:func:`load_snapshot` reads one from YAML).
"""

from services.inference.routing.options import RoutingOptions
from services.inference.routing.router import Router
from services.inference.routing.snapshot import SnapshotError, load_snapshot, parse_snapshot

__all__ = ["Router", "RoutingOptions", "SnapshotError", "load_snapshot", "parse_snapshot"]
