"""A trail as kafkatrail runs it, and the JSON document that carries it on the compacted trails topic.

The topic (``cloudtrail.trails`` by default) is keyed by the trail ARN (UTF-8); the value is
``orjson.dumps(trail.to_document())``; a tombstone (null value) deletes the trail. The document uses
CloudTrail's trail-object member names (``members.DOCUMENT``): ``Name``, ``HomeRegion``,
``AccountId``, ``S3BucketName``, ``S3KeyPrefix``, ``SnsTopicName``, ``IncludeGlobalServiceEvents``,
``IsMultiRegionTrail``, ``LogFileValidationEnabled``, ``CloudWatchLogsLogGroupArn``,
``CloudWatchLogsRoleArn``, ``KmsKeyId``, ``IsOrganizationTrail``, ``IsLogging``, ``TagsList``,
``RecursiveLogging``, ``EventSelectors`` or ``AdvancedEventSelectors``, ``InsightSelectors``.
Unset strings and selectors are omitted; the partition and the ARN are derived, not stored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafkatrail.trails import members
from kafkatrail.trails.errors import TrailError, cut, shown, trail_label
from kafkatrail.trails.fields import JsonObject, TrailFields
from kafkatrail.trails.regions import partition_of
from kafkatrail.trails.validation import validate_trail

_TUPLE_ATTRIBUTES = ("event_selectors", "advanced_event_selectors", "insight_selectors", "tags")


@dataclass(frozen=True, kw_only=True)
class Trail(TrailFields):
    """One trail. Constructing it validates it (``kafkatrail.trails.validation``): every Trail obeys CloudTrail.

    Selectors are kept in AWS's shapes (tuples of the JSON objects PutEventSelectors and
    PutInsightSelectors take); ``event_selectors`` and ``advanced_event_selectors`` are None when
    unset (then the trail logs all management events). Treat the nested objects as read-only.
    """

    def __post_init__(self) -> None:
        for attribute in _TUPLE_ATTRIBUTES:
            value = getattr(self, attribute)
            if isinstance(value, list):
                object.__setattr__(self, attribute, tuple(value))
        validate_trail(self)

    def __hash__(self) -> int:
        """Hash by ARN: the selectors are JSON objects, which do not hash; equal trails share an ARN."""
        return hash(self.arn)

    @property
    def arn(self) -> str:
        """``arn:<partition>:cloudtrail:<home_region>:<account_id>:trail/<name>``."""
        return f"arn:{self.partition}:cloudtrail:{self.home_region}:{self.account_id}:trail/{self.name}"

    def to_document(self) -> JsonObject:
        """The trail as the JSON object published on the trails topic (a deep copy)."""
        document: JsonObject = {}
        for member, attribute in members.DOCUMENT.items():
            value = getattr(self, attribute)
            if value is not None:
                document[member] = copy.deepcopy(list(value) if isinstance(value, tuple) else value)
        return document

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Trail:
        """The trail a topic document describes; raises TrailError if it is malformed or breaks a rule."""
        return trail_from_members(document, members.DOCUMENT)


def trail_from_members(source: Mapping[str, Any], names: Mapping[str, str]) -> Trail:
    """Build a Trail from AWS-named members; ``names`` maps each accepted member to its attribute.

    Members set to null count as absent. The partition is the home region's.
    """
    if not isinstance(source, Mapping):
        raise TrailError("InvalidParameterException", f"must be a mapping of trail members (got {shown(source)})")
    unknown = [member for member in source if member not in names]
    if unknown:
        raise TrailError(
            "InvalidParameterException",
            f"{trail_label(source.get('Name'))}: {cut(unknown[0])}: unknown member (allowed: {', '.join(names)})",
        )
    values: dict[str, Any] = dict.fromkeys(members.REQUIRED)
    values.update({names[member]: copy.deepcopy(value) for member, value in source.items() if value is not None})
    home_region = values["home_region"]
    values["partition"] = (isinstance(home_region, str) and partition_of(home_region)) or "aws"
    return Trail(**values)

