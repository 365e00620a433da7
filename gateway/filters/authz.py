"""The ``authz`` filter: the caller must hold the method's scope and may name only allowed models.

Runs after ``authn``. The scope a method needs comes from
:mod:`gateway.auth.scopes`; the model a request names is read from the first
request message (:mod:`gateway.model_field`), and from every later request of a
``Chat`` stream, and checked against the key's and the project's allowlists (a
later request naming a forbidden model ends the whole stream); with an allowlist,
every model of ``options.fallback_models`` must be allowed too. A refused call ends
with PERMISSION_DENIED and a reason (``SCOPE_MISSING``, ``METHOD_NOT_ALLOWED``,
``MODEL_NOT_ALLOWED``) and is recorded in the audit log. A call ``authn`` did not authenticate is
UNAUTHENTICATED.
"""

from __future__ import annotations

from gateway.auth.authorizer import Authorizer
from gateway.auth.grants import Grants
from gateway.filters.authn import record_refusal
from gateway.filters.base import Call, FilterContext, FilterPlugin, GatewayFilter, Stop
from gateway.model_field import UNREADABLE, ModelFieldReader
from services.kernel.config import Section
from services.kernel.errors import LlmgwError, Unauthenticated

AUTHORIZE_ACTION = "gateway.calls.authorize"


class AuthzConfig(Section):
    """``check_models``: enforce model allowlists (reads each call's first message)."""

    check_models: bool = True


class AuthzFilter(GatewayFilter):
    """Authorizes every call; see the module docstring."""

    def __init__(self, config: AuthzConfig, context: FilterContext) -> None:
        """Read grants and projects from ``context.security``."""
        security = context.security
        self._config = config
        self._grants = security.grants
        self._audit = security.audit
        self._authorizer = Authorizer(security.keys)
        self._models = ModelFieldReader()

    def reads_first_message_of(self, method: str) -> bool:
        """Only methods whose request names a model."""
        return self._config.check_models and self._models.path(method) is not None

    def reads_every_message_of(self, method: str) -> bool:
        """Every request of a ``Chat`` stream names its own model: each is checked."""
        return self.reads_first_message_of(method)

    def _refuse(self, call: Call, error: LlmgwError) -> Stop:
        stop = Stop.of(error)
        record_refusal(self._audit, AUTHORIZE_ACTION, call, stop)
        return stop

    def _grants_of(self, call: Call) -> Grants | LlmgwError:
        grants = self._grants.get(call)
        if grants is None:
            return Unauthenticated("the call is not authenticated", reason="CREDENTIALS_MISSING")
        return grants

    async def on_request(self, call: Call) -> Stop | None:
        """Refuse a call whose credential lacks the method's scope."""
        grants = self._grants_of(call)
        if isinstance(grants, LlmgwError):
            return self._refuse(call, grants)
        try:
            self._authorizer.check_method(grants, call.method)
        except LlmgwError as error:
            return self._refuse(call, error)
        return None

    async def on_first_message(self, call: Call, message: bytes) -> Stop | None:
        """Refuse a call naming a model its key or project may not use."""
        return self._check_models(call, message, first=True)

    async def on_stream_message(self, call: Call, message: bytes) -> Stop | None:
        """Refuse a stream whose later request names a model its key or project may not use;
        messages naming no model (a Chat cancel) pass."""
        return self._check_models(call, message, first=False)

    def _check_models(self, call: Call, message: bytes, *, first: bool) -> Stop | None:
        """Check the model ``message`` names and every model it may fall back to."""
        grants = self._grants_of(call)
        if isinstance(grants, LlmgwError):
            return self._refuse(call, grants)
        if not self._authorizer.restricts_models(grants):
            return None
        model = self._models.read(call.method, message)
        if first and model and not call.model:
            call.model = model
        if not model and not first:
            return None
        fallbacks = self._models.fallbacks(call.method, message)
        try:
            self._authorizer.check_model(grants, model)
            for fallback in (UNREADABLE,) if fallbacks is None else fallbacks:
                self._authorizer.check_model(grants, fallback)
        except LlmgwError as error:
            return self._refuse(call, error)
        return None


plugin = FilterPlugin(config_model=AuthzConfig, build=AuthzFilter)
