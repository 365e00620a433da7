"""The routing table: every name a caller may use, resolved to candidate deployments.

Built once from a ``RegistrySnapshot`` and never changed afterwards; a registry
update builds a new table (see :class:`services.inference.routing.live.LiveTable`).
Names resolve as follows:

* a model group name: its deployments (each ``model_ref`` resolved like below,
  an alias with a traffic split contributing both versions, weight shared by the
  split), the group's strategy, fallbacks and retries;
* ``model@alias``: the alias's version, or both versions of its traffic split
  weighted by the split (always chosen by weighted shuffle);
* ``model``: the model's default alias (``production`` when unset), else its
  latest ACTIVE version (an unset status counts as ACTIVE);
* ``model/versions/<version>``: exactly that version.

Versions that cannot be served (unknown provider, missing credential, options
the adapter refuses) are left out, with the reason in :attr:`RoutingTable.problems`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from llmgw.models.v1 import models_pb2
from provider_adapters.base import ProviderAdapter
from services.inference.routing.adapters import AdapterPool, TargetUnavailable
from services.inference.routing.snapshot import check_snapshot
from services.inference.routing.strategies import strategy_name
from services.kernel.errors import FieldViolation, InvalidArgument, NotFound

DEFAULT_ALIAS = "production"
_SERVED = frozenset(
    {
        models_pb2.VERSION_STATUS_UNSPECIFIED,
        models_pb2.VERSION_STATUS_ACTIVE,
        models_pb2.VERSION_STATUS_DEPRECATED,
        models_pb2.VERSION_STATUS_REGISTERED,
    }
)
_DEFAULTABLE = frozenset({models_pb2.VERSION_STATUS_UNSPECIFIED, models_pb2.VERSION_STATUS_ACTIVE})


@dataclass(frozen=True, slots=True)
class Target:
    """One servable version: its registry entry and its adapter.

    ``key`` (``model/versions/<version>``) names it in health and latency state.
    """

    key: str
    version: models_pb2.ModelVersion
    adapter: ProviderAdapter


@dataclass(frozen=True, slots=True)
class Candidate:
    """A target as one deployment of a route, with its routing weight and limits."""

    deployment_id: str
    target: Target
    weight: int = 1
    priority: int = 0
    max_input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """What a name resolves to: candidates and what to do when they fail.

    ``max_retries`` is None when the name sets none (the router default applies).
    """

    name: str
    model: str
    candidates: tuple[Candidate, ...]
    strategy: str
    max_retries: int | None = None
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Routes by name, plus the adapters the table holds (keys into an AdapterPool)."""

    routes: Mapping[str, Route]
    listed: tuple[str, ...]
    adapter_keys: tuple[tuple[object, ...], ...]
    problems: tuple[str, ...] = ()
    targets: Mapping[str, Target] = field(default_factory=lambda: MappingProxyType({}))

    def route(self, name: str) -> Route:
        """The route of ``name``.

        Raises InvalidArgument for an empty name (a required field left out) and
        NotFound for names the table does not know.
        """
        if not name:
            raise InvalidArgument(
                "a model is required", [FieldViolation("model", "must name a model", "REQUIRED")]
            )
        route = self.routes.get(name)
        if route is None:
            raise NotFound("model", name, f"unknown model {name!r}")
        return route

    def find(self, name: str) -> Route | None:
        """The route of ``name``, or None."""
        return self.routes.get(name)

    def listed_routes(self) -> Iterator[Route]:
        """Routes of the names callers see in ListModels (models, aliases, groups)."""
        for name in self.listed:
            yield self.routes[name]


def build_table(snapshot: models_pb2.RegistrySnapshot, pool: AdapterPool) -> RoutingTable:
    """Resolve every name of ``snapshot``, acquiring adapters from ``pool``.

    On failure to build, acquired adapters are released again (and returned by the
    pool for closing); a table never half-exists.
    """
    problems = list(check_snapshot(snapshot))
    targets: dict[str, Target] = {}
    keys: list[tuple[object, ...]] = []
    for version in snapshot.versions:
        if version.status not in _SERVED:
            continue
        name = f"{version.model}/versions/{version.version}"
        try:
            key, adapter = pool.acquire(version)
        except TargetUnavailable as exc:
            problems.append(str(exc))
            continue
        keys.append(key)
        targets[name] = Target(name, version, adapter)
    return _Builder(snapshot, targets).table(tuple(keys), tuple(problems))


class _Builder:
    def __init__(
        self, snapshot: models_pb2.RegistrySnapshot, targets: Mapping[str, Target]
    ) -> None:
        self._snapshot = snapshot
        self._targets = targets
        self._models = {m.name: m for m in snapshot.models}
        self._aliases = {(a.model, a.alias): a for a in snapshot.aliases}
        self._versions_of: dict[str, list[models_pb2.ModelVersion]] = {}
        for version in snapshot.versions:
            self._versions_of.setdefault(version.model, []).append(version)
            self._models.setdefault(version.model, models_pb2.Model(name=version.model))

    def table(
        self, keys: tuple[tuple[object, ...], ...], problems: tuple[str, ...]
    ) -> RoutingTable:
        routes: dict[str, Route] = {}
        listed: list[str] = []
        for target in self._targets.values():
            routes[target.key] = self._model_route(target.key, target.version.model, [(target, 1)])
        for (model, alias_name), alias in self._aliases.items():
            name = f"{model}@{alias_name}"
            routes[name] = self._model_route(name, model, self._alias_targets(alias))
            listed.append(name)
        for entry in self._models.values():
            shares = self._default_targets(entry)
            routes[entry.name] = self._model_route(entry.name, entry.name, shares)
            listed.append(entry.name)
        for group in self._snapshot.groups:
            routes[group.name] = self._group_route(group)
            listed.append(group.name)
        return RoutingTable(
            routes=MappingProxyType(routes),
            listed=tuple(sorted(listed)),
            adapter_keys=keys,
            problems=problems,
            targets=MappingProxyType(dict(self._targets)),
        )

    def _model_route(self, name: str, model: str, shares: Sequence[tuple[Target, int]]) -> Route:
        entry = self._models.get(model, models_pb2.Model(name=model))
        return Route(
            name=name,
            model=model,
            candidates=tuple(Candidate(t.key, t, weight=w) for t, w in shares),
            strategy=strategy_name(models_pb2.ROUTING_STRATEGY_WEIGHTED_SHUFFLE),
            context_window_fallbacks=tuple(entry.context_window_fallbacks),
            display_name=entry.display_name,
        )

    def _group_route(self, group: models_pb2.ModelGroup) -> Route:
        candidates: list[Candidate] = []
        for deployment in group.deployments:
            weight = deployment.weight or 1
            for target, share in self._ref_targets(deployment.model_ref):
                candidates.append(
                    Candidate(
                        deployment_id=deployment.id,
                        target=target,
                        weight=weight * share,
                        priority=deployment.priority,
                        max_input_tokens=deployment.max_input_tokens,
                    )
                )
        return Route(
            name=group.name,
            model="",
            candidates=tuple(candidates),
            strategy=strategy_name(group.routing_strategy),
            max_retries=group.max_retries or None,
            fallbacks=tuple(group.fallbacks),
            context_window_fallbacks=tuple(group.context_window_fallbacks),
            display_name=group.description,
        )

    def _ref_targets(self, ref: str) -> list[tuple[Target, int]]:
        if "/versions/" in ref:
            target = self._targets.get(ref)
            return [(target, 1)] if target is not None else []
        if "@" in ref:
            model, _, alias = ref.partition("@")
            entry = self._aliases.get((model, alias))
            return self._alias_targets(entry) if entry is not None else []
        model_entry = self._models.get(ref)
        return self._default_targets(model_entry) if model_entry is not None else []

    def _alias_targets(self, alias: models_pb2.Alias) -> list[tuple[Target, int]]:
        main = self._targets.get(f"{alias.model}/versions/{alias.version}")
        split = alias.traffic_split
        canary = (
            self._targets.get(f"{alias.model}/versions/{split.version}") if split.version else None
        )
        if canary is None:
            return [(main, 100)] if main is not None else []
        shares = [(canary, split.weight_percent)]
        if main is not None:
            shares.insert(0, (main, 100 - split.weight_percent))
        return shares

    def _default_targets(self, model: models_pb2.Model) -> list[tuple[Target, int]]:
        alias = self._aliases.get((model.name, model.default_alias or DEFAULT_ALIAS))
        if alias is not None:
            return self._alias_targets(alias)
        candidates = [v for v in self._versions_of.get(model.name, []) if v.status in _DEFAULTABLE]
        for version in sorted(candidates, key=_version_order, reverse=True):
            target = self._targets.get(f"{version.model}/versions/{version.version}")
            if target is not None:
                return [(target, 1)]
        return []


def _version_order(version: models_pb2.ModelVersion) -> tuple[int, int, int, str]:
    """Newest last: numeric ids by value, then creation time, revision, id."""
    numeric = int(version.version) if version.version.isdigit() else -1
    return (numeric, version.create_time.ToNanoseconds(), version.revision, version.version)
