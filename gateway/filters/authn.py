"""The ``authn`` filter: every call must present a valid API key or JWT.

It reads the credential from the call's metadata (see
:mod:`gateway.auth.authenticator`), sets ``call.principal`` and ``call.key_id``,
and forwards the principal to the upstream as ``llmgw-actor-*`` metadata instead
of the credential (which the upstream never sees). A call
without a valid credential ends with UNAUTHENTICATED and a reason
(``CREDENTIALS_MISSING``, ``API_KEY_INVALID``, ``TOKEN_EXPIRED``...) and is
recorded in the audit log. On a call that streams requests (``Chat``,
``UploadDataset``) every later request is authenticated again, from memory, so
a revocation ends an open stream at its next request. Keys are read from memory;
the JWKS (when ``jwt`` is configured in ``gateway.security.jwt``) is fetched at
start and cached.
"""

from __future__ import annotations

from google.protobuf import descriptor_pool

from gateway.auth.audit import AuditSink, audit_entry
from gateway.auth.authenticator import API_KEY_HEADER, AUTHORIZATION, Authenticator
from gateway.auth.grants import GrantTable
from gateway.filters.base import Call, CallOutcome, FilterContext, FilterPlugin, GatewayFilter, Stop
from services.kernel.config import Section
from services.kernel.errors import LlmgwError

AUTHENTICATE_ACTION = "gateway.calls.authenticate"
MAX_METHODS = 1024
CREDENTIAL_KEYS = frozenset({AUTHORIZATION, API_KEY_HEADER})
"""Metadata holding the credential; never forwarded upstream."""


def streams_requests(method: str) -> bool:
    """Whether callers of ``method`` (``/package.Service/Method``) stream their requests."""
    service_name, _, method_name = method.lstrip("/").rpartition("/")
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        return False
    found = service.methods_by_name.get(method_name)
    return bool(found is not None and found.client_streaming)


class AuthnConfig(Section):
    """No options: keys and the JWT verifier come from the gateway's ``security`` section."""


def header_text(call: Call, key: str) -> str:
    """The caller's metadata ``key`` as text (``""`` when absent or binary)."""
    value = call.header(key)
    return value if isinstance(value, str) else ""


def record_refusal(audit: AuditSink, action: str, call: Call, stop: Stop) -> None:
    """Put a refused call into the audit log."""
    audit.record(
        audit_entry(
            action,
            call.method,
            stop.status,
            call.principal,
            request_id=header_text(call, "x-request-id"),
            client_address=call.peer,
            user_agent=header_text(call, "user-agent"),
        )
    )


class AuthnFilter(GatewayFilter):
    """Authenticates every call; see the module docstring."""

    def __init__(self, config: AuthnConfig, context: FilterContext) -> None:
        """Check keys and JWTs with what ``context.security`` holds."""
        security = context.security
        self._authenticator = Authenticator(security.keys, security.jwt)
        self._grants: GrantTable = security.grants
        self._usage = security.usage
        self._audit = security.audit
        self._streaming: dict[str, bool] = {}

    def reads_first_message_of(self, method: str) -> bool:
        """Methods whose callers stream requests: each later one is authenticated again."""
        streams = self._streaming.get(method)
        if streams is None:
            streams = streams_requests(method)
            if len(self._streaming) < MAX_METHODS:  # method names may come from callers
                self._streaming[method] = streams
        return streams

    def reads_every_message_of(self, method: str) -> bool:
        """See :meth:`reads_first_message_of`."""
        return self.reads_first_message_of(method)

    async def on_stream_message(self, call: Call, message: bytes) -> Stop | None:
        """Authenticate the credential again, from memory, so a key revoked (or a token
        expired, or grants changed) while a stream is open takes effect on its next request."""
        try:
            grants = await self._authenticator.authenticate(call.metadata)
        except LlmgwError as error:
            stop = Stop.of(error)
            record_refusal(self._audit, AUTHENTICATE_ACTION, call, stop)
            return stop
        self._grants.put(call, grants)
        return None

    async def on_request(self, call: Call) -> Stop | None:
        """Authenticate ``call`` or stop it with UNAUTHENTICATED."""
        try:
            grants = await self._authenticator.authenticate(call.metadata)
        except LlmgwError as error:
            stop = Stop.of(error)
            record_refusal(self._audit, AUTHENTICATE_ACTION, call, stop)
            return stop
        call.principal = grants.principal
        call.key_id = grants.key_id
        call.upstream_metadata = (
            *(pair for pair in call.upstream_metadata if pair[0] not in CREDENTIAL_KEYS),
            *grants.principal.to_metadata(),
        )
        self._grants.put(call, grants)
        if grants.key_id:
            self._usage.mark(grants.key_id)
        return None

    def on_call_end(self, call: Call, outcome: CallOutcome) -> None:
        """Forget the call's grants."""
        self._grants.discard(call)


plugin = FilterPlugin(config_model=AuthnConfig, build=AuthnFilter)
