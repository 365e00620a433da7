"""Settings precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.kernel.config import ConfigError, Settings, load_settings


def test_defaults_need_nothing() -> None:
    settings = load_settings(Settings, env={})
    assert settings.server.port == 50051
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.redis_url is None
    assert settings.kafka.bootstrap_servers == ""


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "llmgw.yaml"
    config.write_text("server:\n  port: 6000\n  host: 0.0.0.0\nlogging:\n  level: DEBUG\n")
    env = {
        "LLMGW_SERVER__PORT": "7000",
        "LLMGW_METRICS__ENABLED": "false",
        "REDIS_URL": "redis://127.0.0.1:6390/0",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "DATABASE_URL": "postgresql+asyncpg://u@h/db",
        "UNRELATED": "x",
    }
    settings = load_settings(
        Settings, path=config, env=env, overrides={"server": {"grace_period_seconds": 3}}
    )
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 7000
    assert settings.server.grace_period_seconds == 3
    assert settings.logging.level == "DEBUG"
    assert settings.metrics.enabled is False
    assert settings.redis_url == "redis://127.0.0.1:6390/0"
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.database_url == "postgresql+asyncpg://u@h/db"


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("service: inference\n")
    assert load_settings(Settings, env={"LLMGW_CONFIG": str(config)}).service == "inference"


def test_the_secrets_keyring_variables_are_not_settings() -> None:
    env = {"LLMGW_SECRETS_KEYS": '{"k1": "c2VjcmV0"}', "LLMGW_SECRETS_KEY": "c2VjcmV0"}
    assert load_settings(Settings, env=env).service == load_settings(Settings, env={}).service


def test_settings_are_frozen() -> None:
    settings = load_settings(Settings, env={})
    with pytest.raises(ValueError, match="frozen"):
        settings.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("yaml_text", "env", "expected"),
    [
        ("server:\n  prot: 1\n", {}, "server.prot"),
        ("server:\n  port: 70000\n", {}, "server.port"),
        ("", {"LLMGW_SERVER__PORT": "abc"}, "server.port"),
        ("- a\n- b\n", {}, "mapping at the top level"),
        ("server: [\n", {}, "not valid YAML"),
    ],
)
def test_invalid_configuration_names_the_culprit(
    tmp_path: Path, yaml_text: str, env: dict[str, str], expected: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")) as caught:
        load_settings(Settings, path=config, env=env)
    assert str(config) in str(caught.value)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(Settings, path=tmp_path / "absent.yaml", env={})


def test_sections_of_other_processes_are_set_aside(tmp_path: Path) -> None:
    config = tmp_path / "suite.yaml"
    config.write_text("server:\n  port: 6001\ngateway:\n  routes: []\n")
    settings = load_settings(Settings, path=config, env={}, foreign_sections={"gateway"})
    assert settings.server.port == 6001
    with pytest.raises(ConfigError, match="gateway"):
        load_settings(Settings, path=config, env={})


def test_json_values_in_environment_variables() -> None:
    env = {"LLMGW_KAFKA__CLIENT_ID": "plain", "LLMGW_SERVER__HOST": "[::1]x"}
    with pytest.raises(ConfigError, match="LLMGW_SERVER__HOST is not valid JSON"):
        load_settings(Settings, env=env)
    data = {"LLMGW_METRICS": '{"enabled": false, "port": 9100}'}
    settings = load_settings(Settings, env=data)
    assert (settings.metrics.enabled, settings.metrics.port) == (False, 9100)
