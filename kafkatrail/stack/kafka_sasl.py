"""The local broker's opt-in SASL mode (`stack.sasl`, `kafkatrail stack up --sasl`): who may connect, and which
producer principal may write which topic.

Off by default. When on:

- **Clients** connect to one SASL_PLAINTEXT listener on 127.0.0.1 with SCRAM-SHA-512, the only mechanism
  it offers; a client without credentials, or with a wrong password, is refused.
- **The controller** (same JVM, its own listener on 127.0.0.1) authenticates with PLAIN and knows one user,
  the admin. SCRAM cannot serve there: SCRAM credentials live in the cluster metadata, which the
  controller serves.
- **Authorization**: `org.apache.kafka.metadata.authorizer.StandardAuthorizer` (KRaft's), `User:admin` the
  only super user (the workers, `topics create`, `trails apply` run as admin), and nothing allowed without
  an ACL.
- **Credentials**: the admin's SCRAM credential is written into the storage when it is formatted
  (`--add-scram`, KIP-900), as nothing can authenticate to the admin API before one exists. Each producer
  principal gets its SCRAM credential through the admin API (`alter_user_scram_credentials`) and one ACL,
  ALLOW WRITE on its own topic (`create_acls`): only it may write that topic, and it may write nothing else.

Passwords are random, made once per data dir and kept in files of mode 0600 under `kafka/sasl/`:
`admin.json` and `<principal>.json` hold librdkafka client properties (`security.protocol`,
`sasl.mechanism`, `sasl.username`, `sasl.password`), what `kafka_client_config` /
`KAFKATRAIL_KAFKA_CLIENT_CONFIG` takes. A password is never printed and never on a command line: the
broker's `server.properties` (its JAAS entries) is 0600, and the storage format reads the admin's from a
0600 Java argument file (`java @file`) that is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from kafkatrail.stack.processes import StackError

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192  # Kafka's minimum for SCRAM-SHA-512 is 4096
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
PRINCIPAL = re.compile(r"[A-Za-z0-9_-]{1,64}")  # also a file name under kafka/sasl/
ADMIN_TIMEOUT_S = 30.0


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, whatever mode the file had (it may hold a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class SaslFiles:
    """The SASL credentials of one broker's data dir: `<broker root>/sasl/`, mode 0700, files 0600."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def client_config_file(self, principal: str) -> Path:
        if not PRINCIPAL.fullmatch(principal):
            raise StackError("a SASL principal of the local stack must be 1-64 characters of A-Z, a-z, 0-9, '_', '-'")
        return self.folder / f"{principal}.json"

    @property
    def admin_config_file(self) -> Path:
        return self.client_config_file(ADMIN)

    def client_config(self, principal: str = ADMIN) -> dict[str, str]:
        """The librdkafka properties `principal` connects with, made (with a new password) on first use."""
        path = self.client_config_file(principal)
        if path.is_file():
            config: dict[str, str] = json.loads(path.read_text())
            return config
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        config = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM, "sasl.username": principal,
                  "sasl.password": secrets.token_urlsafe(24)}
        write_private(path, json.dumps(config, indent=1) + "\n")
        return config

    def format_arguments(self, config_file: Path, cluster_id: str) -> Path:
        """A 0600 Java argument file: the storage tool's main class and arguments, the admin's credential among
        them (the caller deletes it once the storage is formatted)."""
        password = self.client_config()["sasl.password"]
        path = self.folder / "format.args"
        write_private(path, "\n".join([
            "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", f'"{config_file}"', "--ignore-formatted",
            "--add-scram", f"{MECHANISM}=[name={ADMIN},iterations={SCRAM_ITERATIONS},password={password}]",
        ]) + "\n")
        return path


def server_properties(port: int, controller_port: int, admin_password: str) -> dict[str, str]:
    """The broker settings of SASL mode (listeners, mechanisms, JAAS entries, the authorizer)."""
    scram_login = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" '
                   f'password="{admin_password}";')
    plain_login = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{ADMIN}" '
                   f'password="{admin_password}" user_{ADMIN}="{admin_password}";')
    return {
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config": scram_login,
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": plain_login,
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def grant_producers(bootstrap_servers: str, files: SaslFiles, producers: Mapping[str, str]) -> dict[str, Path]:
    """Give each producer principal (name -> topic) a SCRAM credential and WRITE on its topic alone.

    Idempotent: a principal keeps the password of its file, and an ACL that exists is not duplicated. Returns
    each principal's client config file.
    """
    if not producers:
        return {}
    if ADMIN in producers:
        raise StackError(f"'{ADMIN}' is the local stack's super user; name the producer otherwise")
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **files.client_config(), "log_level": 0})
    upserts = [
        UserScramCredentialUpsertion(principal, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                                     files.client_config(principal)["sasl.password"].encode())
        for principal in producers
    ]
    acls = [
        AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{principal}", "*",
                   AclOperation.WRITE, AclPermissionType.ALLOW)
        for principal, topic in producers.items()
    ]
    try:
        for future in admin.alter_user_scram_credentials(upserts, request_timeout=ADMIN_TIMEOUT_S).values():
            future.result(timeout=ADMIN_TIMEOUT_S)
        for future in admin.create_acls(acls, request_timeout=ADMIN_TIMEOUT_S).values():
            future.result(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise StackError(f"could not create the producers' SCRAM credentials and ACLs: {exc.args[0].str()}") from None
    return {principal: files.client_config_file(principal) for principal in producers}
