"""The AWS member name of each Trail attribute, per shape: CreateTrail request, trail file, trail document."""

from __future__ import annotations

from typing import Final

# Members of botocore's CreateTrailRequest shape (all of them; a unit test holds this to the model).
CREATE_TRAIL: Final = {
    "Name": "name",
    "S3BucketName": "s3_bucket_name",
    "S3KeyPrefix": "s3_key_prefix",
    "SnsTopicName": "sns_topic_name",
    "IncludeGlobalServiceEvents": "include_global_service_events",
    "IsMultiRegionTrail": "is_multi_region_trail",
    "EnableLogFileValidation": "log_file_validation_enabled",
    "CloudWatchLogsLogGroupArn": "cloud_watch_logs_log_group_arn",
    "CloudWatchLogsRoleArn": "cloud_watch_logs_role_arn",
    "KmsKeyId": "kms_key_id",
    "IsOrganizationTrail": "is_organization_trail",
    "TagsList": "tags",
    "RecursiveLogging": "recursive_logging",
}
# PutEventSelectors / PutInsightSelectors members.
SELECTORS: Final = {
    "EventSelectors": "event_selectors",
    "AdvancedEventSelectors": "advanced_event_selectors",
    "InsightSelectors": "insight_selectors",
}
# Where the trail runs and whether it logs: HomeRegion is the trail object's own member, IsLogging is
# GetTrailStatus's; AccountId and OrganizationId are kafkatrail's (AWS takes the account from the
# request's credentials and the organization from AWS Organizations).
PLACEMENT: Final = {"HomeRegion": "home_region", "AccountId": "account_id", "OrganizationId": "organization_id",
                    "IsLogging": "logging"}

# A trail file entry: CreateTrail's request members, selectors, placement.
FILE: Final = {"Name": "name", **PLACEMENT, **CREATE_TRAIL, **SELECTORS}
# When logging was last started and stopped (GetTrailStatus's members, epoch seconds): kept on the topic, never
# in a trail file.
LOGGING_TIMES: Final = {"StartLoggingTime": "start_logging_time", "StopLoggingTime": "stop_logging_time"}
# The document on the trails topic: as the file, but with the trail object's LogFileValidationEnabled, plus the
# logging times.
DOCUMENT: Final = {
    **{("LogFileValidationEnabled" if member == "EnableLogFileValidation" else member): attribute
       for member, attribute in FILE.items()},
    **LOGGING_TIMES,
}
# Attributes without a default: a shape that omits them still passes None so validation names them.
REQUIRED: Final = ("name", "home_region", "account_id", "s3_bucket_name")
