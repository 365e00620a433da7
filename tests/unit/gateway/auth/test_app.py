"""The gateway process with and without its security section."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.app import build
from gateway.settings import (
    DEFAULT_FILTERS,
    GatewaySection,
    GatewaySettings,
    HttpSettings,
    SecuritySettings,
)
from services.kernel.config import MetricsSettings, ServerSettings


def _settings(tmp_path: Path, *, enabled: bool) -> GatewaySettings:
    return GatewaySettings(
        server=ServerSettings(port=0),
        metrics=MetricsSettings(enabled=False),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/llmgw.db",
        gateway=GatewaySection(
            security=SecuritySettings(enabled=enabled), http=HttpSettings(enabled=False)
        ),
    )


def test_the_default_chain_authenticates_and_authorizes() -> None:
    names = [entry.name for entry in DEFAULT_FILTERS]
    assert names.index("authn") < names.index("authz")


def test_with_security_the_gateway_serves_the_admin_api_over_its_store(tmp_path: Path) -> None:
    app = build(_settings(tmp_path, enabled=True), CollectorRegistry(), env={})
    assert "llmgw.admin.v1.AdminService" in [service.name for service in app.services]
    assert len(app.lifespans) == 2  # the security runtime opens before the edge


def test_without_security_the_admin_api_is_unimplemented(tmp_path: Path) -> None:
    app = build(_settings(tmp_path, enabled=False), CollectorRegistry(), env={})
    assert "llmgw.admin.v1.AdminService" in [service.name for service in app.services]
    assert len(app.lifespans) == 1
    assert not (tmp_path / "llmgw.db").exists()
