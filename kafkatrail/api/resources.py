"""The checks CloudTrail makes against a trail's destinations before it accepts a CreateTrail or UpdateTrail.

Each check asks the real service (boto3 clients from `kafkatrail.core.aws.client`, so the stand-in in tests):

- S3: `HeadBucket` -> 404 `S3BucketDoesNotExistException`, 403 `InsufficientS3BucketPolicyException`.
- SNS: `GetTopicAttributes` on the topic's ARN -> missing or not allowed: `InsufficientSnsTopicPolicyException`
  (CloudTrail's answer when it cannot publish to the topic).
- KMS: `DescribeKey` -> missing `KmsKeyNotFoundException`; disabled, pending deletion or not a symmetric
  ENCRYPT_DECRYPT key `KmsException`; otherwise the trail keeps the key's full ARN, as AWS shows it.
- CloudWatch Logs: the log group must exist in the ARN's region (`DescribeLogGroups`) ->
  `InvalidCloudWatchLogsLogGroupArnException`. The role is checked for shape only (no IAM here).

Only the members a call sets are checked (`changed`). A service that cannot be reached is a 503
`ServiceUnavailableException` (SDKs retry it), never an acceptance.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kafkatrail.api.errors import ApiError
from kafkatrail.core import aws
from kafkatrail.core.settings import Settings
from kafkatrail.trails.model import Trail

log = logging.getLogger(__name__)


class AwsResources:
    """A `ResourceChecker` asking S3, SNS, KMS and CloudWatch Logs (clients per service and region)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[tuple[str, str], Any] = {}

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = aws.client(self.settings, service, region, max_attempts=2)
        return self._clients[key]

    def check(self, trail: Trail, changed: frozenset[str]) -> Trail:
        try:
            if "S3BucketName" in changed:
                self._bucket(trail)
            if "SnsTopicName" in changed and trail.sns_topic_name:
                self._topic(trail)
            if "KmsKeyId" in changed and trail.kms_key_id:
                trail = dataclasses.replace(trail, kms_key_id=self._key(trail))
            if "CloudWatchLogsLogGroupArn" in changed and trail.cloud_watch_logs_log_group_arn:
                self._log_group(trail.cloud_watch_logs_log_group_arn)
        except (BotoCoreError, ClientError) as exc:
            log.warning("destination check failed", extra={"trail": trail.name, "error": aws.error_code(exc)})
            raise ApiError("ServiceUnavailableException", "a destination could not be checked; try again",
                           status=503) from None
        return trail

    def _bucket(self, trail: Trail) -> None:
        try:
            self._client("s3", trail.home_region).head_bucket(Bucket=trail.s3_bucket_name)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = aws.error_code(exc)
            if status == 404 or code in ("404", "NoSuchBucket", "NotFound"):
                raise ApiError("S3BucketDoesNotExistException",
                               f"S3 bucket {trail.s3_bucket_name} does not exist") from None
            if status == 403 or code in ("403", "AccessDenied", "Forbidden"):
                raise ApiError("InsufficientS3BucketPolicyException",
                               f"S3 bucket {trail.s3_bucket_name}: CloudTrail may not write to it") from None
            raise

    def _topic(self, trail: Trail) -> None:
        name = trail.sns_topic_name or ""
        arn = name if name.startswith("arn:") else (
            f"arn:{trail.partition}:sns:{trail.home_region}:{trail.account_id}:{name}")
        region = arn.split(":")[3] or trail.home_region
        try:
            self._client("sns", region).get_topic_attributes(TopicArn=arn)
        except ClientError as exc:
            if aws.error_code(exc) in ("NotFound", "NotFoundException", "AuthorizationError", "InvalidParameter"):
                raise ApiError("InsufficientSnsTopicPolicyException",
                               f"SNS topic {name}: does not exist or CloudTrail may not publish to it") from None
            raise

    def _key(self, trail: Trail) -> str:
        key_id = trail.kms_key_id or ""
        region = key_id.split(":")[3] if key_id.startswith("arn:") else trail.home_region
        try:
            metadata = self._client("kms", region).describe_key(KeyId=key_id)["KeyMetadata"]
        except ClientError as exc:
            if aws.error_code(exc) in ("NotFoundException", "InvalidArnException"):
                raise ApiError("KmsKeyNotFoundException", f"KMS key {key_id}: not found in {region}") from None
            raise
        if metadata.get("KeyState") != "Enabled":
            raise ApiError("KmsException", f"KMS key {key_id}: state {metadata.get('KeyState')}, not Enabled")
        # KeyUsage may be absent (the AWS stand-in omits it for the default, a symmetric encryption key).
        if metadata.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT" or metadata.get(
                "KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
            raise ApiError("KmsException", f"KMS key {key_id}: must be a symmetric encryption key")
        return str(metadata["Arn"])

    def _log_group(self, arn: str) -> None:
        parts = arn.split(":")
        region, name = parts[3], parts[6]
        groups = self._client("logs", region).describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
        if not any(group.get("logGroupName") == name for group in groups):
            raise ApiError("InvalidCloudWatchLogsLogGroupArnException", f"log group {name} does not exist in {region}")
