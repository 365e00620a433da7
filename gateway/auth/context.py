"""What the gateway hands its security filters: keys, the audit sink, per-call grants."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.auth.audit import AuditSink, NoAudit
from gateway.auth.grants import GrantTable, KeySource, KeyUsage, NoKeys
from gateway.auth.tokens import JwtVerifier


@dataclass(frozen=True, slots=True)
class SecurityContext:
    """Shared by the authentication and authorization filters of one gateway.

    ``keys`` answers API keys and projects from memory, ``jwt`` verifies bearer
    JWTs (None: only API keys are accepted), ``audit`` takes the entries of refused
    calls, and ``grants`` carries each call's grants from the authentication
    filter to the later ones; ``usage`` collects the ids of the keys used.
    """

    keys: KeySource = field(default_factory=NoKeys)
    jwt: JwtVerifier | None = None
    audit: AuditSink = field(default_factory=NoAudit)
    grants: GrantTable = field(default_factory=GrantTable)
    usage: KeyUsage = field(default_factory=KeyUsage)
