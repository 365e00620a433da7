"""Scopes per method and model allowlists."""

from __future__ import annotations

import pytest

from gateway.auth.authorizer import Authorizer
from gateway.auth.grants import Grants, KeyRecord, ProjectRecord
from gateway.auth.scopes import Scope, required_scope
from gateway.policies import model_matches
from services.kernel.errors import PermissionDenied
from services.kernel.identity import Principal


class Projects:
    def __init__(self, *projects: ProjectRecord) -> None:
        self._projects = {p.id: p for p in projects}

    def key_by_lookup(self, lookup: str) -> KeyRecord | None:
        return None

    def project(self, project_id: str) -> ProjectRecord | None:
        return self._projects.get(project_id)


def _grants(*scopes: Scope, models: tuple[str, ...] = (), project: str = "p") -> Grants:
    return Grants(Principal("api_key", "key_1", project), "key_1", frozenset(scopes), models)


@pytest.mark.parametrize(
    ("method", "scope"),
    [
        ("/llmgw.inference.v1.InferenceService/Complete", Scope.INFERENCE),
        ("/llmgw.inference.v1.InferenceService/Chat", Scope.INFERENCE),
        ("/llmgw.models.v1.ModelRegistryService/GetModel", Scope.MODELS_READ),
        ("/llmgw.models.v1.ModelRegistryService/ListAliases", Scope.MODELS_READ),
        ("/llmgw.models.v1.ModelRegistryService/WatchRegistry", Scope.MODELS_READ),
        ("/llmgw.models.v1.ModelRegistryService/Resolve", Scope.MODELS_READ),
        ("/llmgw.models.v1.ModelRegistryService/CreateModel", Scope.MODELS_WRITE),
        ("/llmgw.models.v1.ModelRegistryService/RollbackAlias", Scope.MODELS_WRITE),
        ("/llmgw.finetuning.v1.FineTuningService/CreateJob", Scope.FINETUNING),
        ("/llmgw.usage.v1.UsageService/QueryUsage", Scope.USAGE_READ),
        ("/llmgw.admin.v1.AdminService/CreateApiKey", Scope.ADMIN),
        ("/other.Service/Method", None),
    ],
)
def test_every_method_needs_its_scope(method: str, scope: Scope | None) -> None:
    assert required_scope(method) is scope


def test_a_missing_scope_and_an_unknown_method_are_denied_with_their_reasons() -> None:
    authorizer = Authorizer(Projects())
    authorizer.check_method(_grants(Scope.INFERENCE), "/llmgw.inference.v1.InferenceService/Embed")
    with pytest.raises(PermissionDenied) as caught:
        authorizer.check_method(_grants(Scope.INFERENCE), "/llmgw.admin.v1.AdminService/GetProject")
    assert caught.value.reason == "SCOPE_MISSING"
    with pytest.raises(PermissionDenied) as caught:
        authorizer.check_method(_grants(*Scope), "/grpc.Unknown/Method")
    assert caught.value.reason == "METHOD_NOT_ALLOWED"


def test_model_allowlists_take_names_aliases_and_prefixes() -> None:
    assert model_matches("anything", ())
    assert model_matches("chat", ("chat",))
    assert model_matches("chat@production", ("chat",))
    assert model_matches("chat@production", ("chat@production",))
    assert not model_matches("chat", ("chat@production",))
    assert not model_matches("chat@staging", ("chat@production",))
    assert model_matches("sim-large", ("sim-*",))
    assert not model_matches("gpt-4o", ("sim-*", "chat"))


def test_both_the_key_and_the_project_list_must_allow_the_model() -> None:
    authorizer = Authorizer(Projects(ProjectRecord("p", ("chat", "sim-small"))))
    authorizer.check_model(_grants(models=("chat",)), "chat")
    for grants, model in (
        (_grants(models=("chat",)), "sim-small"),
        (_grants(), "sim-large"),
        (_grants(), ""),
    ):
        with pytest.raises(PermissionDenied) as caught:
            authorizer.check_model(grants, model)
        assert caught.value.reason == "MODEL_NOT_ALLOWED"
    assert not Authorizer(Projects()).restricts_models(_grants())
    Authorizer(Projects()).check_model(_grants(), "")


def test_an_allowed_model_covers_its_versions() -> None:
    assert model_matches("chat/versions/2", ("chat",))
    assert not model_matches("chatter/versions/2", ("chat",))
