"""Settings: defaults, TOML file, environment precedence, and errors that name the field."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from kafkatrail.core.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KAFKATRAIL_"):
            monkeypatch.delenv(name)


def test_defaults_follow_the_design() -> None:
    settings = load_settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_partitions == 6
    assert dataclasses.asdict(settings.topics) == {
        "events": "cloudtrail.events", "dlq": "cloudtrail.events.dlq", "delivery": "cloudtrail.delivery",
        "insights": "cloudtrail.insights", "notifications": "cloudtrail.notifications",
        "trails": "cloudtrail.trails", "dedupe_changelog": "cloudtrail.processors.dedupe-changelog",
        "insights_changelog": "cloudtrail.insights.state-changelog", "s3_journal": "cloudtrail.sinks.s3-journal",
        "s3_insight_journal": "cloudtrail.sinks.s3-insight-journal",
        "delivery_failures": "cloudtrail.delivery-failures", "trail_status": "cloudtrail.trail-status",
        "history": "cloudtrail.history",
    }


def test_one_prefix_renames_every_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKATRAIL_TOPIC_PREFIX", "acme.audit")
    assert set(dataclasses.asdict(load_settings().topics).values()) == {
        "acme.audit.events", "acme.audit.events.dlq", "acme.audit.delivery", "acme.audit.insights",
        "acme.audit.notifications", "acme.audit.trails", "acme.audit.processors.dedupe-changelog",
        "acme.audit.insights.state-changelog", "acme.audit.sinks.s3-journal", "acme.audit.sinks.s3-insight-journal",
        "acme.audit.trail-status",
        "acme.audit.delivery-failures", "acme.audit.history",
    }


def test_environment_beats_file_and_file_beats_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kafkatrail.toml"
    config.write_text('bootstrap_servers = "kafka-1:9092"\ntopic_partitions = 12\n[stack]\nkafka_port = 9999\n')
    monkeypatch.setenv("KAFKATRAIL_TOPIC_PARTITIONS", "24")
    settings = load_settings(config)
    assert settings.bootstrap_servers == "kafka-1:9092"
    assert settings.topic_partitions == 24
    assert settings.stack.kafka_port == 9999
    assert settings.stack.aws_port == 5000


def test_config_file_named_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kafkatrail.toml"
    config.write_text('topic_prefix = "fromfile"\n')
    monkeypatch.setenv("KAFKATRAIL_CONFIG", str(config))
    assert load_settings().topics.events == "fromfile.events"


def test_client_config_carries_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKATRAIL_KAFKA_CLIENT_CONFIG", '{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}')
    config = load_settings().kafka_config(**{"group.id": "g"})
    assert config == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SASL_SSL",
                      "sasl.mechanism": "PLAIN", "group.id": "g"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KAFKATRAIL_TOPIC_PARTITIONS", "zero", "topic_partitions: Input should be a valid integer"),
        ("KAFKATRAIL_TOPIC_PARTITIONS", "0", "topic_partitions: Input should be greater than or equal to 1"),
        ("KAFKATRAIL_TOPIC_PREFIX", "bad prefix!", "topic_prefix: String should match pattern"),
        ("KAFKATRAIL_STACK__KAFKA_PORT", "70000", "stack.kafka_port: Input should be less than or equal to 65535"),
        ("KAFKATRAIL_STACK__KAFKA_VERSION", "4.1.0", "stack.kafka_version: String should match pattern"),
        ("KAFKATRAIL_TOPIC_REPLICATION_FACTOR", "-2", "topic_replication_factor: Input should be greater"),
        ("KAFKATRAIL_DIGESTS__PERIOD_S", "0", "digests.period_s: Input should be greater than or equal to 1"),
        ("KAFKATRAIL_KEYS__ROTATION_S", "10", "keys.rotation_s: Input should be greater than or equal to 60"),
        ("KAFKATRAIL_API__PORT", "-1", "api.port: Input should be greater than or equal to 0"),
    ],
)
def test_bad_values_name_the_field_and_rule(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                            message: str) -> None:
    monkeypatch.setenv(variable, value)
    field, rule = message.split(": ", 1)
    with pytest.raises(SettingsError, match=re.escape(f"{field} ({variable}): {rule}")):
        load_settings()


def test_a_bad_setting_never_echoes_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-sasl-password"
    monkeypatch.setenv("KAFKATRAIL_KAFKA_CLIENT_CONFIG", f'["sasl.password", "{secret}"]')
    with pytest.raises(SettingsError, match=r"kafka_client_config \(\w+\): Input should be a valid dict") as caught:
        load_settings()
    assert secret not in str(caught.value)
    assert "(got a list)" in str(caught.value)


@pytest.mark.parametrize(("value", "message"), [
    ('{"sasl.password": "SECRET"', "kafka_client_config: not valid JSON: Expecting ',' delimiter at line 1 column 27"),
    ('{"sasl.password": SECRET}', "kafka_client_config: not valid JSON: Expecting value at line 1 column 19"),
    ('{"sasl.password": 5}', "kafka_client_config.sasl.password: Input should be a valid string (got a int)"),
])
def test_client_config_that_does_not_parse_is_one_line_without_its_value(monkeypatch: pytest.MonkeyPatch, value: str,
                                                                          message: str) -> None:
    monkeypatch.setenv("KAFKATRAIL_KAFKA_CLIENT_CONFIG", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    field, rule = message.split(": ", 1)
    assert str(caught.value) == f"invalid settings: {field} (KAFKATRAIL_KAFKA_CLIENT_CONFIG): {rule}"


@pytest.mark.parametrize(("text", "message"), [
    ("[stack]\nkafka_port = \n", "not valid TOML: Invalid value (at line 2, column 14)"),
    ("[stack]\nport = 1\n", "invalid settings: stack.port: Extra inputs are not permitted (got a int)"),
])
def test_a_file_that_does_not_parse_names_the_position_or_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "kafkatrail.toml"
    config.write_text(text)
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    assert str(caught.value).endswith(message)


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "kafkatrail.toml"
    config.write_text("bootstrap_server = 'typo:9092'\n")
    with pytest.raises(SettingsError, match="bootstrap_server: Extra inputs are not permitted"):
        load_settings(config)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(tmp_path / "absent.toml")
