"""The chart renders valid Kubernetes objects that hold the security and wiring promises.

Each values file under ``values/`` is rendered with Helm's engine; every object is
validated against the Kubernetes API schemas (strict: unknown fields are errors)
of the oldest version the chart supports and of the newest one known.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.helm.chart import (
    CHART_DIR,
    COMPONENTS,
    NAMESPACE,
    RELEASE,
    Manifest,
    Release,
    containers,
    load_values,
    pod_spec,
    render,
    walk_strings,
)

VALUES_FILES = ("minimal", "production", "inline-secrets")
KUBE_VERSIONS = ("1.27", kubernetes_validate.latest_version())
"""The chart's minimum (Chart.yaml kubeVersion) and the newest schemas shipped."""

CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}
"""Kinds from CRDs, whose schemas the validator does not ship; checked by hand below."""

INLINE_SECRETS = (
    "SECRET-db-password",
    "SECRET-redis-password",
    "SECRET-kafka-user",
    "SECRET-kafka-password",
    "SECRET-registry-key",
    "SECRET-openai-key",
    "SECRET-anthropic-key",
    "SECRET-jwt-hmac-key",
)
"""Every secret value in values/inline-secrets.yaml."""

JWT = {"issuer": "https://login.example.com/", "audience": "llmgw"}
"""The JWT values every JWKS source needs."""


@pytest.fixture(scope="module", params=VALUES_FILES)
def release(request: pytest.FixtureRequest) -> Release:
    return render(load_values(request.param))


@pytest.fixture(scope="module")
def minimal() -> Release:
    return render(load_values("minimal"))


@pytest.fixture(scope="module")
def production() -> Release:
    return render(load_values("production"))


@pytest.fixture(scope="module")
def inline() -> Release:
    return render(load_values("inline-secrets"))


def _enabled(release: Release) -> list[str]:
    return [name for name in COMPONENTS if release.values["components"][name]["enabled"]]


# --- lint and schema ----------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_lint_reports_no_warning_or_error(values_file: str) -> None:
    report = helm.lint(CHART_DIR, load_values(values_file), strict=True, kube_version="v1.33.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["total_charts_linted"] == 1
    assert problems == []
    assert report["errors"] == []


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"logLevel": "LOUD"}, "/logLevel"),
        ({"components": {"gateway": {"port": 0}}}, "/components/gateway/port"),
        ({"components": {"usage": {"replicas": -1}}}, "/components/usage/replicas"),
        ({"kafka": {"securityProtocol": "SSL_PLAIN"}}, "/kafka/securityProtocol"),
        ({"kafka": {"sasl": {"mechanism": "PLAIN"}}}, "/kafka/securityProtocol"),
        ({"providers": {"apiKeys": {"LLMGW_SERVER__PORT": "1"}}}, "LLMGW_SERVER__PORT"),
        ({"redis": {"url": "http://redis:6379"}}, "/redis/url"),
        ({"unknownKey": True}, "unknownKey"),
        ({"gateway": {"tls": {"enabled": "yes"}}}, "/gateway/tls/enabled"),
        ({"gateway": {"onRedisError": "retry"}}, "/gateway/onRedisError"),
        ({"gateway": {"http": {"maxBodyBytes": 0}}}, "/gateway/http/maxBodyBytes"),
        ({"gateway": {"auth": {"jwt": {"jwksUrl": "file:///x"}}}}, "/gateway/auth/jwt/jwksUrl"),
        ({"gateway": {"security": {"bootstrapProject": "Ops"}}}, "/gateway/security"),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(values)
    assert where in str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"registry": {"seed": {"versions": [{"credential": {"plaintext_value": "sk-1"}}]}}},
            "must not hold credential.plaintext_value",
        ),
        ({"ingress": {"enabled": True}}, "ingress.enabled needs gateway.http.enabled"),
        ({"httpRoute": {"enabled": True}}, "httpRoute.enabled needs gateway.http.enabled"),
        (
            {"gateway": {"http": {"enabled": True}}, "httpRoute": {"enabled": True}},
            "httpRoute.parentRefs",
        ),
        ({"gateway": {"tls": {"enabled": True}}}, "gateway.tls.existingSecret is required"),
        (
            {"gateway": {"auth": {"jwt": {"existingSecret": "jwks"}}}},
            "gateway.auth.jwt needs both issuer and audience",
        ),
        ({"gateway": {"auth": {"jwt": JWT}}}, "gateway.auth.jwt needs a JWKS"),
        (
            {"gateway": {"auth": {"jwt": JWT | {"existingSecret": "j", "jwksUrl": "https://a/"}}}},
            "not both",
        ),
        (
            {"gateway": {"auth": {"jwt": JWT | {"keys": {"keys.pem": "k"}}}}},
            "must hold the JWKS under gateway.auth.jwt.jwksKey (jwks.json)",
        ),
    ],
)
def test_inconsistent_values_fail_to_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(values)
    assert message in str(caught.value)


# --- Kubernetes API schemas ---------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_is_valid_for_the_kubernetes_api(release: Release, kube_version: str) -> None:
    checked = 0
    for obj in release.objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {path}: {exc.message}")
        checked += 1
    assert checked >= 5 * len(_enabled(release))


def test_every_object_has_a_name_labels_and_the_release_namespace(release: Release) -> None:
    for obj in release.objects:
        metadata = obj["metadata"]
        assert metadata["name"].startswith(f"{RELEASE}-llmgw")
        assert metadata["namespace"] == NAMESPACE
        assert metadata["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert len(metadata["name"]) <= 63


def test_service_monitor_scrapes_the_metrics_port_of_every_service(production: Release) -> None:
    (monitor,) = production.of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    scraped = [
        service
        for service in production.of_kind("Service")
        if selector.items() <= service["metadata"]["labels"].items()
        and any(port["name"] == endpoint["port"] for port in service["spec"]["ports"])
    ]
    assert sorted(s["metadata"]["labels"]["app.kubernetes.io/component"] for s in scraped) == (
        sorted(_enabled(production))
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_service_monitor_is_optional(minimal: Release) -> None:
    assert minimal.of_kind("ServiceMonitor") == []


def test_http_route_sends_to_the_gateway_http_port(inline: Release) -> None:
    (route,) = inline.of_kind("HTTPRoute")
    assert route["spec"]["parentRefs"] == [
        {"name": "public", "namespace": "gateways", "sectionName": "https"}
    ]
    (rule,) = route["spec"]["rules"]
    (backend,) = rule["backendRefs"]
    gateway = inline.named("Service", backend["name"])
    assert {"name": "http", "port": backend["port"]}.items() <= _port(gateway, "http").items()


def test_ingress_sends_to_the_gateway_http_port(production: Release) -> None:
    (ingress,) = production.of_kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "llm.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["port"] == {"name": "http"}
    _port(production.named("Service", backend["name"]), "http")
    assert ingress["spec"]["tls"][0]["secretName"] == "llm-example-com-tls"


# --- workloads ----------------------------------------------------------------------


def test_one_deployment_and_two_services_per_enabled_component(release: Release) -> None:
    enabled = _enabled(release)
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in release.of_kind("Deployment")
    }
    assert sorted(deployments) == sorted(enabled)
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        (container,) = pod_spec(deployment)["containers"]
        assert container["args"][:2] == ["serve", name]
        port = release.values["components"][name]["port"]
        for service_name in (f"{RELEASE}-llmgw-{name}", f"{RELEASE}-llmgw-{name}-headless"):
            service = release.named("Service", service_name)
            assert service["spec"]["selector"].items() <= labels.items()
            grpc = _port(service, "grpc")
            assert grpc["port"] == port
            assert grpc["appProtocol"] == "grpc"
        assert (
            release.named("Service", f"{RELEASE}-llmgw-{name}-headless")["spec"]["clusterIP"]
            == "None"
        )


def test_probes_use_the_grpc_health_service(minimal: Release) -> None:
    for deployment in minimal.of_kind("Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["grpc"] == {"port": grpc_port}, probe
            assert container[probe]["periodSeconds"] > 0


def test_gateway_probes_connect_over_tcp_when_it_serves_tls(production: Release) -> None:
    (container,) = pod_spec(production.deployment("gateway"))["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "grpc"}
        assert "grpc" not in container[probe]
    (inference,) = pod_spec(production.deployment("inference"))["containers"]
    assert inference["readinessProbe"]["grpc"] == {"port": 50052}


def test_pods_and_containers_run_restricted(release: Release) -> None:
    workloads = release.of_kind("Deployment") + release.of_kind("Job")
    assert workloads
    for workload in workloads:
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == f"{RELEASE}-llmgw"
        for container in containers(workload):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["privileged"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]["memory"]
    release.named("ServiceAccount", f"{RELEASE}-llmgw")


def test_writable_paths_are_volumes(minimal: Release) -> None:
    for deployment in minimal.of_kind("Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/etc/llmgw/config"]["readOnly"] is True
        assert {"/tmp", "/var/lib/llmgw"} <= mounts.keys()


def test_pods_spread_over_zones_and_nodes(release: Release) -> None:
    for deployment in release.of_kind("Deployment"):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        constraints = pod_spec(deployment)["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        for constraint in constraints:
            assert (
                constraint["labelSelector"]["matchLabels"]
                == deployment["spec"]["selector"]["matchLabels"]
            )
            assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(production: Release) -> None:
    scaled = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa
        for hpa in production.of_kind("HorizontalPodAutoscaler")
    }
    assert sorted(scaled) == [f"{RELEASE}-llmgw-gateway", f"{RELEASE}-llmgw-inference"]
    for deployment in production.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        if name in scaled:
            assert "replicas" not in deployment["spec"]
            assert scaled[name]["spec"]["minReplicas"] >= 3
            assert scaled[name]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        else:
            assert deployment["spec"]["replicas"] >= 1
    assert production.deployment("models")["spec"]["replicas"] == 3


def test_every_deployment_has_a_disruption_budget(release: Release) -> None:
    budgets = release.of_kind("PodDisruptionBudget")
    for deployment in release.of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, deployment["metadata"]["name"]
        assert matching[0]["spec"]["maxUnavailable"] == 1


def test_migrations_job_is_a_helm_hook_when_there_is_a_database(release: Release) -> None:
    jobs = release.of_kind("Job")
    if release.values["database"]["url"] or release.values["database"]["existingSecret"]:
        (job,) = jobs
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "post-install,pre-upgrade"
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        assert pod_spec(job)["restartPolicy"] == "Never"
        (container,) = pod_spec(job)["containers"]
        assert "DATABASE_URL" in {e["name"] for e in container["env"]}
    else:
        assert jobs == []


# --- network policies ---------------------------------------------------------------


def test_only_the_gateway_is_reachable_from_outside_the_release(release: Release) -> None:
    policies = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p
        for p in release.of_kind("NetworkPolicy")
    }
    assert sorted(policies) == sorted(_enabled(release))
    release_pods = {"app.kubernetes.io/name": "llmgw", "app.kubernetes.io/instance": RELEASE}
    metrics_from = release.values["networkPolicy"]["metricsFrom"]
    for name, policy in policies.items():
        spec = policy["spec"]
        deployment = release.deployment(name)
        assert spec["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert spec["policyTypes"] == ["Ingress"]
        service_rule, metrics_rule = spec["ingress"]
        assert metrics_rule == {
            "ports": [{"port": "metrics", "protocol": "TCP"}],
            "from": metrics_from,
        }
        ports = {p["port"] for p in service_rule["ports"]}
        if name == "gateway":
            assert "grpc" in ports
            gateway_from = release.values["networkPolicy"]["gatewayFrom"]
            assert service_rule.get("from", []) == gateway_from
        else:
            assert ports == {"grpc"}
            assert service_rule["from"] == [{"podSelector": {"matchLabels": release_pods}}]


def test_gateway_policy_admits_the_http_edge_when_enabled(
    inline: Release, minimal: Release
) -> None:
    def gateway_ports(release: Release) -> set[str]:
        policy = release.named("NetworkPolicy", f"{RELEASE}-llmgw-gateway")
        return {p["port"] for p in policy["spec"]["ingress"][0]["ports"]}

    assert gateway_ports(inline) == {"grpc", "http"}
    assert gateway_ports(minimal) == {"grpc"}


# --- secrets ------------------------------------------------------------------------


def _secret_values(release: Release) -> set[str]:
    values: set[str] = set()
    for secret in release.of_kind("Secret"):
        for encoded in secret.get("data", {}).values():
            values.add(base64.b64decode(encoded).decode())
    return values


def test_no_secret_value_appears_outside_a_secret(inline: Release) -> None:
    stored = "\n".join(_secret_values(inline))
    for secret in INLINE_SECRETS:
        assert secret in stored
    forms = {form for s in INLINE_SECRETS for form in (s, base64.b64encode(s.encode()).decode())}
    for obj in inline.objects:
        if obj["kind"] == "Secret":
            continue
        text = "\n".join(walk_strings(obj))
        leaked = [form for form in forms if form in text]
        assert leaked == [], f"{obj['kind']}/{obj['metadata']['name']} holds {leaked}"
    assert not any(secret in inline.notes for secret in INLINE_SECRETS)


def test_secrets_reach_the_processes_as_references(inline: Release) -> None:
    secrets = {s["metadata"]["name"]: s for s in inline.of_kind("Secret")}
    (inference,) = pod_spec(inline.deployment("inference"))["containers"]
    assert inference["envFrom"] == [{"secretRef": {"name": f"{RELEASE}-llmgw-providers"}}]
    assert set(secrets[f"{RELEASE}-llmgw-providers"]["data"]) == {
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
    }
    for deployment in inline.of_kind("Deployment"):
        for container in containers(deployment):
            defined: set[str] = set()
            for env in container.get("env", []):
                if "value" in env:
                    # a plain value names Secret-backed variables defined before it
                    assert env["name"] == "LLMGW_GATEWAY__FILTERS"
                    assert set(re.findall(r"\$\((\w+)\)", env["value"])) == {"REDIS_URL"}
                    assert "REDIS_URL" in defined
                else:
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["key"] in secrets[ref["name"]]["data"]
                defined.add(env["name"])
    gateway = pod_spec(inline.deployment("gateway"))
    jwt = next(v for v in gateway["volumes"] if v["name"] == "jwt")
    assert set(secrets[jwt["secret"]["secretName"]]["data"]) == {"jwks.json"}


def test_existing_secrets_are_referenced_not_rendered(production: Release) -> None:
    assert production.of_kind("Secret") == []
    referenced: set[tuple[str, str]] = set()
    for workload in production.of_kind("Deployment") + production.of_kind("Job"):
        for container in containers(workload):
            for env in container.get("env", []):
                if "valueFrom" in env:
                    ref = env["valueFrom"]["secretKeyRef"]
                    referenced.add((ref["name"], ref["key"]))
            for source in container.get("envFrom", []):
                referenced.add((source["secretRef"]["name"], "*"))
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                referenced.add((volume["secret"]["secretName"], "volume"))
    assert referenced == {
        ("llmgw-database", "url"),
        ("llmgw-redis", "url"),
        ("llmgw-kafka-user", "username"),
        ("llmgw-kafka-user", "password"),
        ("llmgw-registry-keys", "secrets-keys"),
        ("llmgw-provider-keys", "*"),
        ("llmgw-gateway-tls", "volume"),
        ("llmgw-jwt-keys", "volume"),
        ("llmgw-bootstrap-key", "volume"),
        ("kafka-ca", "volume"),
    }


@pytest.mark.parametrize(
    ("change", "annotation"),
    [
        ({"logLevel": "DEBUG"}, "checksum/config"),
        ({"redis": {"url": "redis://redis:6379/0"}}, "checksum/secret"),
        ({"providers": {"apiKeys": {"OPENAI_API_KEY": "sk-2"}}}, "checksum/secret"),
        ({"gateway": {"auth": {"jwt": JWT | {"keys": {"jwks.json": "{}"}}}}}, "checksum/secret"),
    ],
)
def test_pods_roll_when_config_or_secrets_change(change: dict[str, Any], annotation: str) -> None:
    base, changed = render({}), render(change)
    for component in COMPONENTS:
        before = base.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        after = changed.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        assert before[annotation] != after[annotation]


def test_names_fit_dns_labels_with_the_longest_release_name() -> None:
    release = render({"fullnameOverride": "a" * 63})
    names = [obj["metadata"]["name"] for obj in release.objects]
    assert f"{'a' * 43}-finetuning-headless" in names
    assert all(len(name) <= 63 for name in names)


def test_pods_stop_receiving_calls_before_they_drain(minimal: Release) -> None:
    values = minimal.values
    for deployment in minimal.of_kind("Deployment"):
        pod = pod_spec(deployment)
        (container,) = pod["containers"]
        sleep = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep == ["sleep", str(values["preStopSleepSeconds"])]
        assert values["preStopSleepSeconds"] >= values["gateway"]["dnsRefreshSeconds"]
        budget = values["preStopSleepSeconds"] + values["gracePeriodSeconds"]
        assert pod["terminationGracePeriodSeconds"] > budget


def _port(service: Manifest, name: str) -> dict[str, Any]:
    for port in service["spec"]["ports"]:
        if port["name"] == name:
            found: dict[str, Any] = port
            return found
    raise AssertionError(f"{service['metadata']['name']} has no port {name}")
