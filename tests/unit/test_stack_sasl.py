"""The local broker's SASL mode without a broker: its properties, its credential files, its exports."""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from kafkatrail.stack import Endpoints
from kafkatrail.stack.kafka_broker import BrokerLayout, _check_same_mode, _server_properties
from kafkatrail.stack.kafka_sasl import AUTHORIZER, SaslFiles, grant_producers
from kafkatrail.stack.processes import StackError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_sasl_mode_authenticates_with_scram_only_and_authorizes_by_acl(tmp_path: Path) -> None:
    layout = BrokerLayout(tmp_path / "kafka")
    config = properties(_server_properties(layout, 9092, 9093, sasl=True))
    assert config["listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert config["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092"
    assert config["listener.security.protocol.map"] == "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    assert config["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["authorizer.class.name"] == AUTHORIZER == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert config["super.users"] == "User:admin"
    assert config["allow.everyone.if.no.acl.found"] == "false"
    password = layout.sasl.client_config()["sasl.password"]
    assert password in config["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]


def test_plaintext_mode_is_unchanged(tmp_path: Path) -> None:
    config = properties(_server_properties(BrokerLayout(tmp_path / "kafka"), 9092, 9093))
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert "authorizer.class.name" not in config
    assert not (tmp_path / "kafka" / "sasl").exists()


def test_credentials_are_made_once_in_private_files(tmp_path: Path) -> None:
    files = SaslFiles(tmp_path / "sasl")
    admin = files.client_config()
    assert admin == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                     "sasl.username": "admin", "sasl.password": admin["sasl.password"]}
    assert len(admin["sasl.password"]) >= 32
    assert files.client_config() == admin
    team_a = files.client_config("team-a")
    assert team_a["sasl.username"] == "team-a" and team_a["sasl.password"] != admin["sasl.password"]
    assert mode(files.folder) == 0o700
    assert {mode(path) for path in files.folder.iterdir()} == {0o600}
    arguments = files.format_arguments(tmp_path / "server.properties", "cluster")
    assert mode(arguments) == 0o600
    assert f"SCRAM-SHA-512=[name=admin,iterations=8192,password={admin['sasl.password']}]" in arguments.read_text()


@pytest.mark.parametrize("principal", ["../admin", "team a", "", "x" * 65, "team/a"])
def test_a_principal_that_is_no_plain_name_is_refused(tmp_path: Path, principal: str) -> None:
    with pytest.raises(StackError, match="1-64 characters"):
        SaslFiles(tmp_path).client_config(principal)


def test_the_admin_is_no_producer(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="super user"):
        grant_producers("127.0.0.1:1", SaslFiles(tmp_path), {"admin": "cloudtrail.events.admin"})


def test_exports_read_the_admin_properties_from_their_file_and_print_no_password(tmp_path: Path) -> None:
    files = SaslFiles(tmp_path / "it's here")
    password = files.client_config()["sasl.password"]
    exports = Endpoints("127.0.0.1:9092", "http://127.0.0.1:5000", files.admin_config_file).shell_exports()
    assert password not in exports
    quoted = shlex.quote(str(files.admin_config_file))
    assert exports.splitlines()[-1] == f'export KAFKATRAIL_KAFKA_CLIENT_CONFIG="$(cat {quoted})"'
    shell = subprocess.run(["bash", "-c", 'eval "$1"; printf %s "$KAFKATRAIL_KAFKA_CLIENT_CONFIG"', "-", exports],
                           capture_output=True, text=True, check=True)
    assert json.loads(shell.stdout) == files.client_config()  # what `eval "$(kafkatrail stack up)"` exports
    assert "KAFKATRAIL_KAFKA_CLIENT_CONFIG" not in Endpoints("127.0.0.1:9092", "http://127.0.0.1:5000").shell_exports()


@pytest.mark.parametrize(("formatted_as", "started_with_sasl"), [("plaintext", True), (None, True), ("sasl", False)])
def test_storage_keeps_the_mode_it_was_formatted_in(tmp_path: Path, formatted_as: str | None,
                                                    started_with_sasl: bool) -> None:
    layout = BrokerLayout(tmp_path / "kafka")
    layout.log_dir.mkdir(parents=True)
    (layout.log_dir / "meta.properties").write_text("formatted\n")
    if formatted_as is not None:  # None: formatted before SASL mode existed
        layout.mode_file.write_text(f"{formatted_as}\n")
    with pytest.raises(StackError, match=r"was formatted (with|without) SASL and cannot be started"):
        _check_same_mode(layout, started_with_sasl)
    _check_same_mode(layout, not started_with_sasl)
