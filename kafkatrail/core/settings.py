"""The one typed settings object every kafkatrail component reads.

Values come, highest priority first, from keyword arguments, `KAFKATRAIL_*` environment variables
(nested fields with a double underscore: `KAFKATRAIL_STACK__KAFKA_PORT=9192`), a TOML file named by
`KAFKATRAIL_CONFIG` (or passed to `load_settings`), and the defaults below.

AWS endpoints and credentials are deliberately not settings: boto3's own chain (`AWS_ENDPOINT_URL`,
`AWS_PROFILE`, instance roles, ...) decides, so pointing at real AWS changes nothing here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

from kafkatrail.deploy import resource
from kafkatrail.schemas.contract import TopicNames
from kafkatrail.schemas.log_files import gzip_level


def shipped_file(name: str) -> Path:
    """The path of a file shipped in `kafkatrail.deploy` (installed packages keep their data files on disk)."""
    return Path(str(resource(name)))


class SettingsError(ValueError):
    """Settings that do not validate; the message names each field and the rule it broke."""


class StackSettings(BaseModel):
    """Where and how the embedded local stack (Kafka broker + AWS stand-in) runs."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(Path(".cache/stack"), description="broker storage, logs and the stack's state file")
    cache_dir: Path = Field(Path(".cache/kafka"), description="Kafka jars, one folder per version")
    kafka_version: str = Field("3.9.1", pattern=r"^3\.\d+\.\d+$", description="Apache Kafka 3.x release")
    kafka_port: int = Field(9092, ge=1, le=65535)
    aws_port: int = Field(5000, ge=1, le=65535)
    kafka_heap_mb: int = Field(512, ge=128)
    pom: Path = Field(default_factory=lambda: shipped_file("kafka/pom.xml"), description="the POM that names the jars")
    start_timeout_s: float = Field(90.0, gt=0)
    stop_timeout_s: float = Field(30.0, gt=0)
    sasl: bool = Field(False, description="SASL/SCRAM-SHA-512 and ACLs on the broker (kafkatrail/stack/kafka_sasl.py)")


class WorkerSettings(BaseModel):
    """What every worker role has: its consumer group, its session timeout and where it serves /metrics."""

    model_config = ConfigDict(extra="forbid")

    group_id: str = Field(min_length=1, description="the role's consumer group; scale out by starting more")
    session_timeout_s: int = Field(10, ge=6, description="a worker silent this long leaves the group")
    metrics_host: str = Field("127.0.0.1", description="address of /metrics, /healthz and /readyz")
    metrics_port: int = Field(ge=0, le=65535, description="0: serve no /metrics, /healthz, /readyz")


class TransactionalWorkerSettings(WorkerSettings):
    """What every transactional worker (`kafkatrail.processors.transactional`) adds: its identity and timeout."""

    instance_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="stable per process: a restarted worker with the same id fences its crashed predecessor",
    )
    transaction_timeout_s: int = Field(30, ge=5, description="the broker aborts a dead worker's open transaction")


ACCOUNT_ID = re.compile(r"[0-9]{12}")
SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
RESERVED_SOURCE_NAMES = frozenset({"dlq"})  # `<prefix>.events.dlq` is the dead-letter topic
MAX_TOPIC_NAME = 249  # Kafka's limit


class EventSource(BaseModel):
    """One producer principal's events topic, `<topic_prefix>.events.<name>`, and the accounts it may write for.

    Only that principal may write the topic (a Kafka ACL, outside kafkatrail; the local stack creates it);
    the processor dead-letters a record of it whose recipientAccountId is not in `accounts`
    (`processors/sources.py`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the topic suffix; by convention the producer's Kafka principal")
    accounts: list[str] = Field(min_length=1, description="the 12-digit AWS account ids this source may write for")

    @field_validator("name")
    @classmethod
    def _name_is_a_topic_suffix(cls, name: str) -> str:
        if not SOURCE_NAME.fullmatch(name):
            raise ValueError("must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-' (it names a Kafka topic)")
        if name.lower() in RESERVED_SOURCE_NAMES:
            raise ValueError("is reserved: <topic_prefix>.events.dlq is the dead-letter topic")
        return name

    @field_validator("accounts")
    @classmethod
    def _accounts_are_distinct_account_ids(cls, accounts: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        for index, account in enumerate(accounts):
            if not ACCOUNT_ID.fullmatch(account):
                raise ValueError(f"entry {index} must be a 12-digit AWS account id")
            if account in seen:
                raise ValueError(f"entries {seen[account]} and {index} are the same account id")
            seen[account] = index
        return accounts


class ProcessorSettings(TransactionalWorkerSettings):
    """How the stream processor (`kafkatrail worker processors`) reads, dedupes and commits."""

    group_id: str = Field("kafkatrail-processors", min_length=1, description="consumer group of every processor")
    dedupe_window_s: int = Field(86_400, ge=60, description="a repeated eventID within this many seconds is dropped")
    dedupe_bucket_s: int = Field(3_600, ge=1, description="granularity at which old eventIDs are forgotten")
    producer_clock_tolerance_s: int = Field(
        300, ge=0, description="on an events topic that keeps producers' timestamps (CreateTime), how far ahead of "
        "the processor's clock a record's timestamp may move the dedupe window")
    batch_max_events: int = Field(2_000, ge=1, description="events per transaction at most")
    batch_timeout_s: float = Field(0.2, gt=0, description="wait at most this long to fill a batch")
    metrics_port: int = Field(9464, ge=0, le=65535)
    sources: list[EventSource] = Field(
        default_factory=list,
        description="none: read the events topic, every account allowed; else read only these sources' topics",
    )

    @field_validator("sources")
    @classmethod
    def _source_names_are_distinct(cls, sources: list[EventSource]) -> list[EventSource]:
        seen: dict[str, int] = {}
        for index, source in enumerate(sources):
            folded = source.name.lower()  # topics differing only in case are legal, but a trap for operators
            if folded in seen:
                raise ValueError(f"entries {seen[folded]} and {index} have the same name (names are compared "
                                 "ignoring case)")
            seen[folded] = index
        return sources


class S3SinkSettings(WorkerSettings):
    """How the S3 sink (`kafkatrail worker s3`) batches the delivery topic into CloudTrail log files."""

    group_id: str = Field("kafkatrail-s3", min_length=1)
    metrics_port: int = Field(9465, ge=0, le=65535)
    flush_interval_s: float = Field(300.0, ge=1, description="a log file is closed this long after it opened")
    max_file_records: int = Field(50_000, ge=1, description="a log file is closed at this many records")
    max_file_bytes: int = Field(64 * 2**20, ge=1024, description="...or at this much uncompressed JSON")
    max_open_bytes: int = Field(
        64 * 2**20, ge=2**20, description="open log files together hold at most about this much memory (compressed "
        "records and compressor state); past it the largest are closed early")
    gzip_engine: Literal["isal", "zlib"] = Field("isal", description="the deflate implementation log files are "
                                                 "written with (ISA-L: about 10x faster, files about 8 % larger)")
    gzip_level: int | None = Field(None, description="isal 0-3 (default 2), zlib 1-9 (default 6)")
    retry_max_backoff_s: float = Field(30.0, gt=0, description="S3 and SNS calls are retried forever, backing off")
    parked_retry_interval_s: float = Field(
        300.0, gt=0, description="a log file S3 refused for good is tried again this often (and when its trail "
        "changes)")

    @model_validator(mode="after")
    def _gzip_level_fits_the_engine(self) -> S3SinkSettings:
        self.gzip_level = gzip_level(self.gzip_engine, self.gzip_level)
        return self


class CloudWatchSinkSettings(WorkerSettings):
    """How the CloudWatch Logs sink (`kafkatrail worker cloudwatch`) batches PutLogEvents calls."""

    group_id: str = Field("kafkatrail-cloudwatch", min_length=1)
    metrics_port: int = Field(9466, ge=0, le=65535)
    flush_interval_s: float = Field(5.0, gt=0, description="pending events are sent at least this often")
    max_pending_bytes: int = Field(
        32 * 2**20, ge=2**20, description="pending events of all streams together hold at most about this much; "
        "past it the largest streams are sent early")
    retry_max_backoff_s: float = Field(30.0, gt=0, description="calls are retried forever, backing off")


class DigestSettings(WorkerSettings):
    """How the digest worker (`kafkatrail worker digests`) signs a digest file per period and chain."""

    group_id: str = Field("kafkatrail-digests", min_length=1, description="consumer group on the S3 sink's journal")
    period_s: int = Field(3600, ge=1, description="one digest per trail, account and region this often")
    lookback_days: int = Field(31, ge=1, description="how far back a restarted worker looks for a chain's last digest")
    retry_max_backoff_s: float = Field(30.0, gt=0, description="S3 calls are retried forever, backing off")
    metrics_port: int = Field(9467, ge=0, le=65535)


class InsightsSettings(TransactionalWorkerSettings):
    """The Insights worker (`kafkatrail worker insights`) and its detector's rule (see processors/insights.py)."""

    group_id: str = Field("kafkatrail-insights", min_length=1, description="consumer group on the delivery topic")
    batch_max_events: int = Field(5_000, ge=1, description="delivery records per transaction at most")
    batch_timeout_s: float = Field(1.0, gt=0, description="wait at most this long to fill a batch")
    metrics_port: int = Field(9468, ge=0, le=65535)
    baseline_days: int = Field(7, ge=1, le=28, description="days of per-slot history the baseline is learned from")
    min_history_days: int = Field(1, ge=1, description="no Insight before a trail has this many days of history")
    slot_minutes: int = Field(10, ge=1, le=60, description="granularity of the history; must divide a day")
    neighbour_slots: int = Field(1, ge=1, description="slots on each side pooled into the baseline at least")
    max_pool_slots: int = Field(6, ge=1, description="...widened up to this many until pool_calls are pooled")
    pool_calls: int = Field(60, ge=1, description="calls the baseline pools around a time of day if it can")
    floor_rank: int = Field(2, ge=1, le=7, description="with a week of history: at least the n-th lowest day")
    min_baseline_rate: float = Field(0.005, gt=0, description="expected rate of a unit never or rarely seen, per min")
    windows: tuple[int, ...] = Field((1, 2, 3, 5, 8, 12, 20, 30), min_length=1,
                                     description="window lengths (minutes) the start rule tests")
    min_expected: float = Field(2.0, gt=0, description="a window counts once it expects this many calls")
    min_active_minutes: int = Field(3, ge=1, description="...and has calls in this many of its minutes")
    start_ratio: float = Field(3.0, gt=1, description="start when a window exceeds this multiple of expected")
    start_alpha: float = Field(1e-7, gt=0, lt=1, description="...and is this improbable as (over-dispersed) noise")
    max_dispersion: float = Field(10.0, ge=1, description="cap of the learned variance-to-mean ratio")
    end_ratio: float = Field(2.0, ge=1, description="a look-back under this multiple of expected is quiet")
    end_minutes: int = Field(3, ge=1, description="the end rule looks back at least this many minutes")
    end_calls: float = Field(10.0, gt=0, description="...and long enough to expect this many at the Insight's rate")
    max_insight_minutes: int = Field(1440, ge=1, description="an Insight ends after this long at the latest")
    idle_end_s: int = Field(900, ge=1, description="a partition without events this long ends its open Insights")
    allowed_lateness_s: int = Field(120, ge=0, description="a minute is evaluated once event time is this far past")



class S3InsightsSettings(WorkerSettings):
    """`kafkatrail worker s3-insights`: its own group and port; files are batched as `[s3]` says."""

    group_id: str = Field("kafkatrail-s3-insights", min_length=1)
    metrics_port: int = Field(9469, ge=0, le=65535)


class CloudWatchInsightsSettings(WorkerSettings):
    """`kafkatrail worker cloudwatch-insights`: its own group and port; batches as `[cloudwatch]` says."""

    group_id: str = Field("kafkatrail-cloudwatch-insights", min_length=1)
    metrics_port: int = Field(9470, ge=0, le=65535)


class HistorySettings(WorkerSettings):
    """Event history (`kafkatrail worker history`): where the store lives and how long it keeps events."""

    group_id: str = Field("kafkatrail-history", min_length=1, description="consumer group on the history topic")
    metrics_port: int = Field(9471, ge=0, le=65535)
    store_path: Path = Field(Path(".cache/history/events.sqlite3"),
                             description="the store every history worker of this node writes and the API reads")
    retention_days: int = Field(90, ge=1, description="events older than this (by eventTime) are purged")
    purge_interval_s: float = Field(600.0, gt=0, description="how often a worker purges expired events")


class KeySettings(BaseModel):
    """The digest signing keys: a folder of RSA keys rotated on schedule, or an AWS KMS asymmetric key."""

    model_config = ConfigDict(extra="forbid")

    folder: Path = Field(Path(".cache/keys"), description="public-keys.json and the 0600 private keys")
    rotation_s: int = Field(30 * 86_400, ge=60, description="a signing key is replaced after this long")
    kms_key_id: str | None = Field(None, description="sign with this KMS key (RSA, SIGN_VERIFY) instead")


class AwsSettings(BaseModel):
    """How every AWS client is built (`kafkatrail.core.aws.client`)."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(None, description="none: boto3's own resolution (and AWS_ENDPOINT_URL)")
    region: str | None = Field(None, description="none: boto3's own resolution (AWS_REGION, the config file)")
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(15.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=10, description="botocore's standard retry mode, within one call")


class ApiSettings(BaseModel):
    """Where `kafkatrail api` (the CloudTrail-compatible HTTP endpoint) listens, and who may call it."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8470, ge=0, le=65535)
    default_region: str = Field("us-east-1", description="anonymous requests only: the region when SigV4 names none")
    credentials_file: Path | None = Field(None, description="TOML access keys -> accounts (mode 0600); required "
                                                            "unless allow_anonymous")
    allow_anonymous: bool = Field(False, description="serve unauthenticated requests (every trail visible)")
    tls_cert: Path | None = Field(None, description="PEM certificate chain: serve HTTPS (with tls_key)")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    idle_timeout_s: float = Field(15.0, gt=0, description="close a connection idle (or sending headers) this long")
    body_timeout_s: float = Field(10.0, gt=0, description="a request body must arrive within this")


class Settings(BaseSettings):
    """kafkatrail's configuration. Build it with `load_settings()` to get readable errors."""

    model_config = SettingsConfigDict(env_prefix="KAFKATRAIL_", env_nested_delimiter="__", extra="forbid")

    bootstrap_servers: str = Field("127.0.0.1:9092", min_length=1)
    kafka_client_config: dict[str, str] = Field(
        default_factory=dict,
        description="extra librdkafka properties for every client (security.protocol, sasl.*, ssl.*)",
    )
    topic_prefix: str = Field("cloudtrail", pattern=r"^[A-Za-z0-9._-]+$")
    topic_partitions: int = Field(6, ge=1)
    topic_replication_factor: int = Field(-1, ge=-1, description="-1: the cluster's default.replication.factor")
    stack: StackSettings = Field(default_factory=StackSettings)
    processors: ProcessorSettings = Field(default_factory=ProcessorSettings)
    s3: S3SinkSettings = Field(default_factory=S3SinkSettings)
    cloudwatch: CloudWatchSinkSettings = Field(default_factory=CloudWatchSinkSettings)
    digests: DigestSettings = Field(default_factory=DigestSettings)
    insights: InsightsSettings = Field(default_factory=InsightsSettings)
    s3_insights: S3InsightsSettings = Field(default_factory=S3InsightsSettings)
    cloudwatch_insights: CloudWatchInsightsSettings = Field(default_factory=CloudWatchInsightsSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    keys: KeySettings = Field(default_factory=KeySettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @model_validator(mode="after")
    def _source_topics_fit_kafka(self) -> Settings:
        topics = self.topics
        for index, source in enumerate(self.processors.sources):
            longest = max(len(topics.source(source.name)), len(topics.source_changelog(source.name)))
            if longest > MAX_TOPIC_NAME:
                raise ValueError(f"processors.sources.{index}.name: with topic_prefix it makes a topic name of "
                                 f"{longest} characters; Kafka allows at most {MAX_TOPIC_NAME}")
        return self

    @property
    def topics(self) -> TopicNames:
        return TopicNames.with_prefix(self.topic_prefix)

    def kafka_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka configuration for a client of this cluster, with per-client overrides on top."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka_client_config, **overrides}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = settings_cls.model_config.get("toml_file") or os.environ.get("KAFKATRAIL_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(str(config_file))))
        return tuple(sources)


def settings_environment(settings: Settings) -> dict[str, str]:
    """`settings` as the KAFKATRAIL_* environment variables that load them again (how a child worker gets them).

    Unset (None) values are left out, so the child takes their default, which is None too.
    """
    environment: dict[str, str] = {}

    def export(name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, BaseModel):
            for field in type(value).model_fields:
                export(f"{name}__{field.upper()}", getattr(value, field))
        elif isinstance(value, dict | list | tuple):
            environment[name] = json.dumps(to_jsonable_python(value))
        elif isinstance(value, bool):
            environment[name] = "true" if value else "false"
        else:
            environment[name] = str(value)

    for field in Settings.model_fields:
        export(f"KAFKATRAIL_{field.upper()}", getattr(settings, field))
    return environment


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment and an optional TOML file; raises SettingsError naming the bad fields."""
    settings_cls: type[Settings] = Settings
    config_file = config_file or (Path(os.environ["KAFKATRAIL_CONFIG"]) if "KAFKATRAIL_CONFIG" in os.environ else None)
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"config file {config_file}: no such file")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})

        settings_cls = FileSettings
    # No message quotes a value: a settings field may hold a secret (kafka_client_config's sasl.password).
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_where(err['loc'])}: {err['msg']} (got a {type(err.get('input')).__name__})" for err in exc.errors())
        raise SettingsError(f"invalid settings: {problems}") from None
    except SourceError as exc:
        field = FIELD_IN_SOURCE_ERROR.search(str(exc))
        cause = exc.__cause__ or exc.__context__
        rule = f"not valid JSON: {cause.msg} at line {cause.lineno} column {cause.colno}" \
            if isinstance(cause, json.JSONDecodeError) else "cannot be parsed"
        raise SettingsError(f"invalid settings: {_where((field.group(1),) if field else ())}: {rule}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {config_file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"config file {config_file}: cannot be read: {exc.strerror}") from None


FIELD_IN_SOURCE_ERROR = re.compile(r'field "([^"]+)"')


def _where(loc: tuple[int | str, ...]) -> str:
    """A field's dotted path and the environment variable that sets it (`stack.kafka_port
    (KAFKATRAIL_STACK__KAFKA_PORT)`): a nested section's field has one of its own, a list or dict as a whole."""
    if not loc:
        return "settings"
    model: type[BaseModel] | None = Settings
    names: list[str] = []
    for part in loc:
        if model is None:
            break
        field = model.model_fields.get(str(part))
        if field is None:  # a key no section has: no variable sets it
            names = []
            break
        names.append(str(part).upper())
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    variable = f" (KAFKATRAIL_{'__'.join(names)})" if names else ""
    return ".".join(str(part) for part in loc) + variable
