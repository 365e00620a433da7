"""The rendered configuration is what the processes accept.

Each container's command line runs through the real ``llmgw`` CLI with the
rendered ConfigMap as its ``--config`` file and the container's environment
(secret references filled with stand-in values). The settings the CLI loads and
the app it builds are captured just before the server would start, so a typo in
a rendered key, a wrong section or a filter name the gateway lacks fails here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

import services.cli
from gateway.filters.budget import BudgetConfig
from gateway.filters.rate_limit import RateLimitConfig
from gateway.limits.redis_access import OnRedisError
from gateway.settings import GatewaySettings
from services.inference.routing.snapshot import parse_snapshot
from services.kernel.config import Settings
from services.kernel.server import ServiceApp
from services.models.portable import parse_document
from tests.helm.chart import (
    COMPONENTS,
    NAMESPACE,
    RELEASE,
    Manifest,
    Release,
    load_values,
    pod_spec,
    render,
)
from tests.unit.gateway.certs import Authority

CONFIG_MOUNT = Path("/etc/llmgw/config")
STAND_INS = {
    "DATABASE_URL": "postgresql+asyncpg://llmgw:stand-in@postgres:5432/llmgw",
    "REDIS_URL": "redis://redis:6379/0",
}
CONVENTIONAL = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
STAND_IN_JWKS = {"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": "c3RhbmQtaW4"}]}
REFERENCE = re.compile(r"\$\$|\$\((\w+)\)")
"""A dependent variable reference in an env value, ``$(NAME)``, or the escape ``$$``."""


def _container_env(release: Release, container: dict[str, Any]) -> dict[str, str]:
    """The environment the container gets, secrets replaced by stand-ins."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = _expand(item["value"], env)
        else:
            env[item["name"]] = STAND_INS.get(item["name"], "stand-in")
    for source in container.get("envFrom", []):
        name = source["secretRef"]["name"]
        keys = release.values["providers"]["apiKeys"] or {"OPENAI_API_KEY": ""}
        env.update(dict.fromkeys(keys, f"stand-in-from-{name}"))
    return env


def _expand(value: str, defined: Mapping[str, str]) -> str:
    """``value`` with ``$(NAME)`` of variables defined before it replaced, as the kubelet does."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return defined.get(match.group(1), match.group(0))

    return REFERENCE.sub(replace, value)


def _load(
    release: Release,
    component: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    env_filter: frozenset[str] = frozenset({"LLMGW_SECRETS_KEYS"}),
) -> tuple[Settings, ServiceApp]:
    """Run the container's command line up to the point the server would start.

    The container's filesystem is laid out under ``tmp_path``: its mounted config
    and Secrets (stand-in certificates and keys), and the file paths of the
    rendered configuration point there.
    """
    pod = pod_spec(release.deployment(component))
    (container,) = pod["containers"]
    _lay_out_mounts(tmp_path, pod, container, release.config_map()["data"])
    args = list(container["args"])
    config_file = tmp_path / args[args.index("--config") + 1].lstrip("/")
    args[args.index("--config") + 1] = str(config_file)
    for name in list(_llmgw_environment()):
        monkeypatch.delenv(name)
    for name, value in _container_env(release, container).items():
        if name not in env_filter:
            monkeypatch.setenv(name, value)
    captured: list[tuple[ServiceApp, Settings]] = []

    async def capture(app: ServiceApp, settings: Settings) -> None:
        captured.append((app, settings))

    monkeypatch.setattr(services.cli, "serve", capture)
    monkeypatch.setattr(services.cli, "configure_logging", lambda *_: None)
    assert services.cli.main(args) == 0
    ((app, settings),) = captured
    return settings, app


def _lay_out_mounts(
    root: Path, pod: dict[str, Any], container: dict[str, Any], config: Mapping[str, str]
) -> None:
    authority = Authority(root)
    leaf = authority.issue("gateway")
    contents = {"tls.crt": leaf.cert, "tls.key": leaf.key, "ca.crt": authority.cert}
    contents["client-ca.crt"] = authority.cert
    contents["jwks.json"] = json.dumps(STAND_IN_JWKS).encode()
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in config.items():
                rebased = text.replace(" /etc/llmgw/", f" {root}/etc/llmgw/")
                rebased = rebased.replace(" /var/lib/llmgw/", f" {root}/var/lib/llmgw/")
                (folder / key).write_text(rebased, encoding="utf-8")
        elif "secret" in volume:
            for item in volume["secret"].get("items", []):
                (folder / item["path"]).write_bytes(contents.get(item["path"], b"stand-in"))


def _llmgw_environment() -> Mapping[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("LLMGW_") or k in CONVENTIONAL}


@pytest.mark.parametrize("values_file", ["minimal", "production", "inline-secrets"])
def test_every_process_accepts_its_rendered_configuration(
    values_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values(values_file))
    enabled = [c for c in COMPONENTS if release.values["components"][c]["enabled"]]
    for component in enabled:
        settings, app = _load(release, component, tmp_path, monkeypatch)
        assert settings.service == component
        assert settings.server.host == "0.0.0.0"
        assert settings.server.port == release.values["components"][component]["port"]
        assert settings.metrics.port == release.values["metricsPort"]
        assert settings.logging.level == release.values["logLevel"]
        assert app.name == component


def test_gateway_finds_each_backend_through_its_headless_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("production"))
    settings, _ = _load(release, "gateway", tmp_path, monkeypatch)
    gateway = settings.model_dump()["gateway"]
    headless = {s["metadata"]["name"]: s for s in release.of_kind("Service")}
    assert sorted(gateway["clusters"]) == ["inference", "models", "usage"]
    for name, cluster in gateway["clusters"].items():
        dns = cluster["dns"]
        service = headless[f"{RELEASE}-llmgw-{name}-headless"]
        assert dns["name"] == f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
        assert dns["port"] == service["spec"]["ports"][0]["port"]
        assert cluster["lb_policy"] == "least_request"
    assert [r["cluster"] for r in gateway["routes"]] == [
        "inference",
        "inference",
        "models",
        "usage",
    ]
    assert gateway["routes"][0]["match"]["method_prefix"] == "Embed"
    tls = gateway["listener"]["tls"]
    assert _mounted(tmp_path, release, "gateway", tls["cert_file"]) == (
        "llmgw-gateway-tls",
        "tls.crt",
    )
    assert _mounted(tmp_path, release, "gateway", tls["key_file"]) == (
        "llmgw-gateway-tls",
        "tls.key",
    )
    assert _mounted(tmp_path, release, "gateway", tls["client_ca_file"]) == (
        "llmgw-gateway-tls",
        "ca.crt",
    )


def test_kafka_tls_and_sasl_reach_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("production"))
    for component in ("gateway", "inference", "models", "usage"):
        settings, _ = _load(release, component, tmp_path, monkeypatch)
        kafka = settings.kafka
        assert kafka.bootstrap_servers.startswith("kafka-0.kafka:9093,")
        assert kafka.security_protocol == "SASL_SSL"
        assert kafka.sasl_mechanism == "SCRAM-SHA-512"
        (container,) = pod_spec(release.deployment(component))["containers"]
        env_names = {e["name"] for e in container["env"]}
        assert {kafka.sasl_username_env, kafka.sasl_password_env} <= env_names
        assert kafka.ssl_cafile is not None
        assert _mounted(tmp_path, release, component, Path(kafka.ssl_cafile)) == (
            "kafka-ca",
            "ca.crt",
        )
        assert settings.redis_url == STAND_INS["REDIS_URL"]
        assert settings.database_url == STAND_INS["DATABASE_URL"]


def test_inference_follows_the_registry_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("production"))
    settings, _ = _load(release, "inference", tmp_path, monkeypatch)
    routing = settings.model_dump()["routing"]
    host, _, port = routing["registry_address"].rpartition(":")
    service = release.named("Service", host)
    assert int(port) == service["spec"]["ports"][0]["port"] == 50053
    assert settings.model_dump()["usage"]["spool_dir"] == tmp_path / "var/lib/llmgw/spool/usage"


def test_inference_reads_the_routing_table_from_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("inline-secrets"))
    settings, _ = _load(release, "inference", tmp_path, monkeypatch)
    routing = settings.model_dump()["routing"]
    assert routing["registry_address"] is None
    key = routing["file"].relative_to(tmp_path / CONFIG_MOUNT.relative_to("/")).as_posix()
    snapshot = parse_snapshot(yaml.safe_load(release.config_map()["data"][key]))
    assert [v.provider for v in snapshot.versions] == ["simulated"]


def test_registry_seed_is_a_registry_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("production"))
    settings, _ = _load(release, "models", tmp_path, monkeypatch)
    registry = settings.model_dump()["registry"]
    assert registry["providers"] == ("openai", "anthropic", "simulated")
    key = registry["seed_file"].relative_to(tmp_path / CONFIG_MOUNT.relative_to("/")).as_posix()
    snapshot = parse_document(release.config_map()["data"][key])
    assert [v.credential.env_var for v in snapshot.versions] == ["OPENAI_API_KEY"]


def test_without_a_database_each_pod_keeps_sqlite_on_its_data_volume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("minimal"))
    settings, _ = _load(release, "models", tmp_path, monkeypatch)
    assert settings.database_url == "sqlite+aiosqlite:////var/lib/llmgw/llmgw.db"
    (container,) = pod_spec(release.deployment("models"))["containers"]
    data = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/llmgw")
    volume = next(
        v for v in pod_spec(release.deployment("models"))["volumes"] if v["name"] == data["name"]
    )
    assert volume == {"name": "data", "emptyDir": {}}
    assert "WARNING: no database is configured" in release.notes


def test_models_accepts_the_registry_secrets_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("inline-secrets"))
    settings, _ = _load(release, "models", tmp_path, monkeypatch, env_filter=frozenset())
    assert settings.service == "models"


def _mounted(root: Path, release: Release, component: str, path: Path) -> tuple[str, str]:
    """The (Secret, key) that ``path`` (under ``root``) in ``component``'s container comes from."""
    deployment: Manifest = release.deployment(component)
    pod = pod_spec(deployment)
    (container,) = pod["containers"]
    target = Path("/") / path.relative_to(root)
    for mount in container["volumeMounts"]:
        if target.parent == Path(mount["mountPath"]):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            item = next(i for i in volume["secret"]["items"] if i["path"] == target.name)
            return volume["secret"]["secretName"], item["key"]
    raise AssertionError(f"{path} is not mounted in {component}")


def _gateway(release: Release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    settings, _ = _load(release, "gateway", tmp_path, monkeypatch)
    assert isinstance(settings, GatewaySettings)
    return settings


@pytest.mark.parametrize("values_file", ["production", "inline-secrets"])
def test_http_edge_listens_where_the_service_and_routes_send(
    values_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values(values_file))
    http = _gateway(release, tmp_path, monkeypatch).gateway.http
    assert http.enabled
    assert http.host == "0.0.0.0"
    assert http.port == release.values["gateway"]["http"]["port"] == 8080
    assert http.max_body_bytes == release.values["gateway"]["http"]["maxBodyBytes"]
    (container,) = pod_spec(release.deployment("gateway"))["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == http.port
    service = release.named("Service", f"{RELEASE}-llmgw-gateway")
    (service_port,) = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    assert ports[service_port["targetPort"]] == http.port
    backends = []
    for ingress in release.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            backends += [path["backend"]["service"] for path in rule["http"]["paths"]]
    for backend in backends:
        assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    for route in release.of_kind("HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                assert ref["name"] == service["metadata"]["name"]
                assert ref["port"] == service_port["port"]
                backends.append(ref)
    assert backends


def test_http_edge_is_off_unless_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = render(load_values("minimal"))
    assert not _gateway(release, tmp_path, monkeypatch).gateway.http.enabled
    (container,) = pod_spec(release.deployment("gateway"))["containers"]
    assert [p["name"] for p in container["ports"]] == ["grpc", "metrics"]


def test_gateway_security_comes_from_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("production"))
    security = _gateway(release, tmp_path, monkeypatch).gateway.security
    assert security.enabled
    assert security.poll_interval_seconds == 2
    assert security.audit_topic == "platform.llmgw.audit.v1"
    assert security.spend_namespace == "llmgw-prod"
    assert security.bootstrap_key_file is not None
    assert _mounted(tmp_path, release, "gateway", security.bootstrap_key_file) == (
        "llmgw-bootstrap-key",
        "api-key",
    )
    jwt = security.jwt
    assert jwt is not None
    assert (jwt.issuer, jwt.audience) == ("https://login.example.com/", "llmgw")
    assert (jwt.subject_claim, jwt.project_claim, jwt.scopes_claim) == (
        "sub",
        "tenant",
        "permissions",
    )
    assert jwt.jwks_url is None
    assert jwt.jwks_file is not None
    assert _mounted(tmp_path, release, "gateway", jwt.jwks_file) == (
        "llmgw-jwt-keys",
        "keys.json",
    )
    usage, _ = _load(release, "usage", tmp_path, monkeypatch)
    pipeline = usage.model_dump()["pipeline"]
    assert pipeline["audit_topic"] == security.audit_topic
    assert pipeline["spend_namespace"] == security.spend_namespace


def test_inline_jwks_is_mounted_from_the_charts_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("inline-secrets"))
    security = _gateway(release, tmp_path, monkeypatch).gateway.security
    assert security.bootstrap_key_file is None
    assert security.jwt is not None and security.jwt.jwks_file is not None
    secret, key = _mounted(tmp_path, release, "gateway", security.jwt.jwks_file)
    data = release.named("Secret", secret)["data"]
    assert key in data
    assert "jwks.json" in release.values["gateway"]["auth"]["jwt"]["keys"]


def test_jwt_keys_may_come_from_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://login.example.com/.well-known/jwks.json"
    jwt_values = {"issuer": "https://login.example.com/", "audience": "llmgw", "jwksUrl": url}
    release = render({"gateway": {"auth": {"jwt": jwt_values}}})
    jwt = _gateway(release, tmp_path, monkeypatch).gateway.security.jwt
    assert jwt is not None
    assert (jwt.jwks_url, jwt.jwks_file) == (url, None)
    volumes = pod_spec(release.deployment("gateway"))["volumes"]
    assert "jwt" not in {v["name"] for v in volumes}


@pytest.mark.parametrize("values_file", ["production", "inline-secrets"])
def test_limit_filters_use_the_release_redis(
    values_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values(values_file))
    gateway = _gateway(release, tmp_path, monkeypatch).gateway
    assert [f.name for f in gateway.filters] == [
        "access_log",
        "metrics",
        "authn",
        "authz",
        "rate_limit",
        "budget",
    ]
    on_error = OnRedisError(release.values["gateway"]["onRedisError"])
    configs = {f.name: f.config for f in gateway.filters}
    for config in (
        RateLimitConfig.model_validate(configs["rate_limit"]),
        BudgetConfig.model_validate(configs["budget"]),
    ):
        assert config.redis_url == STAND_INS["REDIS_URL"]
        assert config.on_redis_error is on_error
        assert config.namespace == gateway.security.spend_namespace
    config_file = yaml.safe_load(release.config_map()["data"]["config.yaml"])
    assert "filters" not in config_file["gateway"]


def test_without_redis_the_limit_filters_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render(load_values("minimal"))
    gateway = _gateway(release, tmp_path, monkeypatch).gateway
    assert [f.name for f in gateway.filters] == ["access_log", "metrics", "authn", "authz"]
    (container,) = pod_spec(release.deployment("gateway"))["containers"]
    assert "env" not in container
    assert "WARNING: no Redis is configured" in release.notes
    assert "no bootstrap admin key is configured" in release.notes
    assert "no bootstrap admin key" not in render(load_values("production")).notes
