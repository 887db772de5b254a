"""`processors.sources` and `stack.sasl`: strict validation, errors naming field and rule, never the value."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kafkatrail.core.settings import SettingsError, load_settings, settings_environment


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KAFKATRAIL_"):
            monkeypatch.delenv(name)


def source(name: str = "team-a", accounts: object = ("111111111111",)) -> dict[str, object]:
    return {"name": name, "accounts": list(accounts) if isinstance(accounts, tuple) else accounts}


BAD_SOURCES = [  # (sources, the error it must give)
    ([source("team a")],
     "processors.sources.0.name: Value error, must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"),
    ([source("team.a")], "processors.sources.0.name: Value error, must be 1-64 characters"),
    ([source("")], "processors.sources.0.name: Value error, must be 1-64 characters"),
    ([source("a" * 65)], "processors.sources.0.name: Value error, must be 1-64 characters"),
    ([source("team-a\n")], "processors.sources.0.name: Value error, must be 1-64 characters"),
    ([source("dlq")], "processors.sources.0.name: Value error, is reserved: <topic_prefix>.events.dlq is the "
                      "dead-letter topic"),
    ([source("DLQ")], "processors.sources.0.name: Value error, is reserved"),
    ([source(accounts=())], "processors.sources.0.accounts: List should have at least 1 item"),
    ([source(accounts=("11111111111",))], "processors.sources.0.accounts: Value error, entry 0 must be a 12-digit "
                                           "AWS account id"),
    ([source(accounts=("111111111111", "1111111111112"))], "processors.sources.0.accounts: Value error, entry 1 must"),
    ([source(accounts=("111111111111\n",))], "processors.sources.0.accounts: Value error, entry 0 must"),
    ([source(accounts=("\uff11" * 12,))], "processors.sources.0.accounts: Value error, entry 0 must"),  # fullwidth 1
    ([source(accounts=("111111111111", "222222222222", "111111111111"))],
     "processors.sources.0.accounts: Value error, entries 0 and 2 are the same account id"),
    ([source(accounts=[111111111111])], "processors.sources.0.accounts.0: Input should be a valid string"),
    ([source(accounts="111111111111")], "processors.sources.0.accounts: Input should be a valid list"),
    ([source(), source("team-b"), source("Team-A")],
     "processors.sources: Value error, entries 0 and 2 have the same name (names are compared ignoring case)"),
    ([{**source(), "principal": "team-a"}], "processors.sources.0.principal: Extra inputs are not permitted"),
    ([{"name": "team-a"}], "processors.sources.0.accounts: Field required"),
    ({"team-a": ["111111111111"]}, "processors.sources: Input should be a valid list"),
]


@pytest.mark.parametrize(("sources", "error"), BAD_SOURCES)
def test_bad_sources_name_the_field_and_the_rule(monkeypatch: pytest.MonkeyPatch, sources: object,
                                                 error: str) -> None:
    monkeypatch.setenv("KAFKATRAIL_PROCESSORS__SOURCES", json.dumps(sources))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    field, rule = error.split(": ", 1)
    assert f"{field} (KAFKATRAIL_PROCESSORS__SOURCES): {rule}" in str(caught.value)


def test_a_source_topic_longer_than_kafka_allows_is_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(topic_prefix="p" * 170, processors={"sources": [source("a" * 64)]})
    assert ("processors.sources.0.name: with topic_prefix it makes a topic name of 263 characters; Kafka allows at "
            "most 249") in str(caught.value)


def test_a_source_error_never_echoes_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t sasl/password!"
    monkeypatch.setenv("KAFKATRAIL_KAFKA_CLIENT_CONFIG", json.dumps({"sasl.password": secret}))
    monkeypatch.setenv("KAFKATRAIL_PROCESSORS__SOURCES", json.dumps([source(secret, (secret,))]))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "processors.sources.0.name" in str(caught.value)
    assert "processors.sources.0.accounts" in str(caught.value)
    assert secret not in str(caught.value)


def test_sources_from_a_file_and_back_through_the_environment(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kafkatrail.toml"
    config.write_text('[[processors.sources]]\nname = "team-a"\naccounts = ["111111111111", "444444444444"]\n\n'
                      '[[processors.sources]]\nname = "team_b"\naccounts = ["333333333333"]\n')
    settings = load_settings(config)
    assert [(s.name, s.accounts) for s in settings.processors.sources] == [
        ("team-a", ["111111111111", "444444444444"]), ("team_b", ["333333333333"])]
    assert settings.topics.source("team-a") == "cloudtrail.events.team-a"
    assert settings.topics.source_changelog("team_b") == "cloudtrail.processors.dedupe-changelog.team_b"
    for name, value in settings_environment(settings).items():  # how a child worker gets them
        monkeypatch.setenv(name, value)
    assert load_settings().processors.sources == settings.processors.sources


def test_no_sources_and_no_sasl_by_default() -> None:
    settings = load_settings()
    assert settings.processors.sources == []
    assert settings.stack.sasl is False


@pytest.mark.parametrize(("value", "sasl"), [("true", True), ("false", False)])
def test_sasl_mode_of_the_local_stack(monkeypatch: pytest.MonkeyPatch, value: str, sasl: bool) -> None:
    monkeypatch.setenv("KAFKATRAIL_STACK__SASL", value)
    assert load_settings().stack.sasl is sasl


def test_sasl_mode_takes_only_a_boolean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKATRAIL_STACK__SASL", "scram")
    with pytest.raises(SettingsError, match=r"stack\.sasl \(KAFKATRAIL_STACK__SASL\): Input should be a valid boolean"):
        load_settings()


def test_the_deployment_example_loads_and_takes_its_password_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "kafkatrail.sasl.example.toml"
    monkeypatch.setenv("KAFKATRAIL_KAFKA_CLIENT_CONFIG", '{"sasl.password": "from-a-secret-store"}')
    settings = load_settings(example)
    assert settings.kafka_config() == {
        "bootstrap.servers": "broker-1:9096,broker-2:9096,broker-3:9096", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "kafkatrail", "sasl.password": "from-a-secret-store"}
    assert {s.name: s.accounts for s in settings.processors.sources} == {
        "team-a": ["111111111111"], "team-b": ["333333333333", "444444444444"]}
    assert '"sasl.password" =' not in example.read_text()  # the file itself holds no password
