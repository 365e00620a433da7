"""Clusters: the upstream services of the gateway and how calls are spread over them.

A :class:`~gateway.clusters.cluster.Cluster` is a set of endpoints (static, or
from a DNS name re-resolved periodically), each with its own channel; a balancer
picks one per call among those that pass active health checks and are not ejected
by outlier detection; a retry budget bounds the retries of the cluster.
"""
