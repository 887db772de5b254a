"""The members of a trail, as plain data: what CloudTrail's rules (`kafkatrail.trails.validation`) are checked on.

`kafkatrail.trails.model.Trail` adds the validation on construction and the derived members (the ARN, the
topic document); the rules need only these fields, so they do not depend on the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class TrailFields:
    """One trail's members, unvalidated. Selectors are kept in AWS's shapes (tuples of JSON objects)."""

    name: str
    home_region: str
    account_id: str
    s3_bucket_name: str
    partition: str = "aws"
    s3_key_prefix: str | None = None
    sns_topic_name: str | None = None
    include_global_service_events: bool = True
    is_multi_region_trail: bool = False
    log_file_validation_enabled: bool = False
    cloud_watch_logs_log_group_arn: str | None = None
    cloud_watch_logs_role_arn: str | None = None
    kms_key_id: str | None = None
    is_organization_trail: bool = False
    organization_id: str | None = None
    logging: bool = True
    event_selectors: tuple[JsonObject, ...] | None = None
    advanced_event_selectors: tuple[JsonObject, ...] | None = None
    insight_selectors: tuple[JsonObject, ...] = ()
    tags: tuple[JsonObject, ...] = ()
    recursive_logging: bool = True
    start_logging_time: float | None = None  # epoch seconds of the latest StartLogging (GetTrailStatus)
    stop_logging_time: float | None = None  # epoch seconds of the latest StopLogging
