"""A test filter that names the caller from metadata, standing in for authentication."""

from __future__ import annotations

from importlib.metadata import EntryPoint

from gateway.filters.base import Call, FilterContext, FilterPlugin, GatewayFilter
from services.kernel.config import Section
from services.kernel.identity import API_KEY_ACTOR, Principal

KEY_HEADER = "x-test-key"
PROJECT_HEADER = "x-test-project"


class CallerConfig(Section):
    """No settings."""


class CallerFromMetadata(GatewayFilter):
    """Sets ``call.principal`` to the API key and project named in the call's metadata."""

    async def on_request(self, call: Call) -> None:
        key, project = call.header(KEY_HEADER), call.header(PROJECT_HEADER)
        if isinstance(key, str) and key:
            call.principal = Principal(
                actor_type=API_KEY_ACTOR,
                actor_id=key,
                project_id=project if isinstance(project, str) else "",
            )
            call.key_id = key


def build(config: CallerConfig, context: FilterContext) -> CallerFromMetadata:
    return CallerFromMetadata()


plugin = FilterPlugin(config_model=CallerConfig, build=build)

ENTRY_POINTS = (EntryPoint("test_caller", f"{__name__}:plugin", "llmgw.gateway_filters"),)
"""Pass as ``available_filters`` to a gateway to offer the ``test_caller`` filter."""


def caller(key: str, project: str = "") -> tuple[tuple[str, str], ...]:
    """Metadata naming ``key`` (and ``project``) as the caller."""
    pairs = [(KEY_HEADER, key)]
    if project:
        pairs.append((PROJECT_HEADER, project))
    return tuple(pairs)
