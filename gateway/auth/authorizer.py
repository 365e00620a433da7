"""What a caller may do: the scope of each method and the models of its key and project.

Model allowlists hold model names, aliases (``model@alias``) and prefixes ending
in ``*``. A name allows the model and every alias of it; an alias allows only
itself. A call must pass both the key's list and its project's (an empty list
allows every model). Refusals are :class:`~services.kernel.errors.PermissionDenied`
with a stable reason.
"""

from __future__ import annotations

from gateway.auth.grants import Grants, KeySource
from gateway.auth.scopes import required_scope
from gateway.policies import model_matches
from services.kernel.errors import PermissionDenied


class Authorizer:
    """Checks grants against the scope table and the model allowlists."""

    def __init__(self, keys: KeySource) -> None:
        """Read projects' allowlists from ``keys``."""
        self._keys = keys

    def check_method(self, grants: Grants, method: str) -> None:
        """Raise PermissionDenied unless ``grants`` hold the scope ``method`` needs."""
        scope = required_scope(method)
        if scope is None:
            raise PermissionDenied("the method is not open to callers", reason="METHOD_NOT_ALLOWED")
        if scope not in grants.scopes:
            raise PermissionDenied(
                f"the credential lacks the {scope.value!r} scope",
                reason="SCOPE_MISSING",
                metadata={"scope": scope.value},
            )

    def restricts_models(self, grants: Grants) -> bool:
        """Whether the key or the project of ``grants`` has a model allowlist."""
        project = self._keys.project(grants.principal.project_id)
        return bool(grants.allowed_models) or bool(project is not None and project.allowed_models)

    def check_model(self, grants: Grants, model: str) -> None:
        """Raise PermissionDenied unless the key and its project may call ``model``."""
        project = self._keys.project(grants.principal.project_id)
        project_models = project.allowed_models if project is not None else ()
        if not model and (grants.allowed_models or project_models):
            raise PermissionDenied(
                "the request names no model, but the caller may only use some",
                reason="MODEL_NOT_ALLOWED",
            )
        if not model_matches(model, grants.allowed_models):
            raise PermissionDenied(
                f"the API key may not use model {model!r}",
                reason="MODEL_NOT_ALLOWED",
                metadata={"model": model},
            )
        if not model_matches(model, project_models):
            raise PermissionDenied(
                f"the project may not use model {model!r}",
                reason="MODEL_NOT_ALLOWED",
                metadata={"model": model},
            )
