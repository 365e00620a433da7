"""Resolution of a model reference against a registry snapshot.

The same answer an inference replica computes from its live table:

- ``model/versions/<v>``: that version alone;
- ``model@alias``: the alias's version, plus its traffic split as a second
  target (weights ``100 - p`` and ``p``);
- a bare model name: its default alias (``production`` when unset), else its
  newest ACTIVE version;
- a group name: every deployment's targets, weights multiplied, with the
  group's strategy, fallbacks and retries.

NOT_FOUND when the reference names nothing; FAILED_PRECONDITION when it
names something with nothing to serve it.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmgw.models.v1 import models_pb2
from services.kernel.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.models.refs import DEFAULT_ALIAS, Ref, alias_name, parse_ref, version_name


@dataclass(frozen=True, slots=True)
class _Index:
    models: dict[str, models_pb2.Model]
    versions: dict[tuple[str, str], models_pb2.ModelVersion]
    aliases: dict[tuple[str, str], models_pb2.Alias]
    groups: dict[str, models_pb2.ModelGroup]


def resolve(
    snapshot: models_pb2.RegistrySnapshot, revision: int, ref: str
) -> models_pb2.ResolveResponse:
    """Resolve ``ref`` against ``snapshot`` taken at ``revision`` (rules above)."""
    parsed = parse_ref(ref)
    if parsed is None:
        raise InvalidArgument(
            f"{ref!r} is not a model reference",
            [FieldViolation("ref", "must be model@alias, model, group or model/versions/<id>")],
        )
    index = _Index(
        models={m.name: m for m in snapshot.models},
        versions={(v.model, v.version): v for v in snapshot.versions},
        aliases={(a.model, a.alias): a for a in snapshot.aliases},
        groups={g.name: g for g in snapshot.groups},
    )
    response = models_pb2.ResolveResponse(ref=ref, revision=revision)
    group = index.groups.get(parsed.name) if parsed.bare else None
    if group is not None:
        for deployment in group.deployments:
            inner = parse_ref(deployment.model_ref)
            if inner is None:
                continue
            for target in _targets(index, inner, deployment.model_ref):
                target.deployment_id = deployment.id
                target.weight *= deployment.weight or 1
                target.priority = deployment.priority
                target.requests_per_minute = deployment.requests_per_minute
                target.tokens_per_minute = deployment.tokens_per_minute
                target.max_input_tokens = deployment.max_input_tokens
                response.deployments.append(target)
        response.routing_strategy = (
            group.routing_strategy or models_pb2.ROUTING_STRATEGY_WEIGHTED_SHUFFLE
        )
        response.fallbacks.extend(group.fallbacks)
        response.max_retries = group.max_retries
        response.context_window_fallbacks.extend(group.context_window_fallbacks)
        return response
    response.model = parsed.name
    response.deployments.extend(_targets(index, parsed, ref))
    response.routing_strategy = models_pb2.ROUTING_STRATEGY_WEIGHTED_SHUFFLE
    model = index.models.get(parsed.name)
    if model is not None:
        response.context_window_fallbacks.extend(model.context_window_fallbacks)
    return response


def _targets(index: _Index, ref: Ref, text: str) -> list[models_pb2.ResolvedDeployment]:
    if parsed_version := ref.version:
        version = index.versions.get((ref.name, parsed_version))
        if version is None:
            raise NotFound("model version", version_name(ref.name, parsed_version))
        return [_target(version, 1)]
    if ref.name not in index.models:
        raise NotFound("model", ref.name)
    alias_id = ref.alias or index.models[ref.name].default_alias or DEFAULT_ALIAS
    alias = index.aliases.get((ref.name, alias_id))
    if alias is not None:
        return _alias_targets(index, alias)
    if ref.alias:
        raise NotFound("alias", alias_name(ref.name, ref.alias))
    active = [
        v
        for (model, _), v in index.versions.items()
        if model == ref.name and v.status == models_pb2.VERSION_STATUS_ACTIVE
    ]
    if not active:
        raise FailedPrecondition(
            f"{text!r} has no alias {alias_id!r} and no ACTIVE version", reason="NOTHING_TO_SERVE"
        )
    newest = max(active, key=lambda v: (v.create_time.ToNanoseconds(), v.revision))
    return [_target(newest, 1)]


def _alias_targets(index: _Index, alias: models_pb2.Alias) -> list[models_pb2.ResolvedDeployment]:
    main = index.versions.get((alias.model, alias.version))
    split = alias.traffic_split
    canary = index.versions.get((alias.model, split.version)) if split.version else None
    targets: list[models_pb2.ResolvedDeployment] = []
    if main is not None:
        targets.append(_target(main, 100 - split.weight_percent if canary else 100))
    if canary is not None:
        targets.append(_target(canary, split.weight_percent))
    return targets


def _target(version: models_pb2.ModelVersion, weight: int) -> models_pb2.ResolvedDeployment:
    return models_pb2.ResolvedDeployment(
        deployment_id=f"{version.model}/versions/{version.version}",
        version=version,
        weight=weight,
    )
