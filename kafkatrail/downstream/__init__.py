"""For the consumers of kafkatrail's output: react to delivered log files and events in a few lines.

Two topics (names from `Settings.topics`):

- `notifications` (`cloudtrail.notifications`): one message per log file the S3 sink has stored, keyed by
  the trail ARN, CloudTrail's notification `{"s3Bucket": ..., "s3ObjectKey": [...]}` as value. Decoded to
  `LogFileNotification`.
- `delivery` (`cloudtrail.delivery`): one CloudTrail event record (compact JSON) per trail that selected it,
  keyed `trailARN|account|region`, written in Kafka transactions: read it read_committed. Decoded to
  `CloudTrailEvent`.

`notifications()` and `events()` are generators over a confluent-kafka consumer in your consumer group
(`kafkatrail.downstream.iterator` says how offsets are committed). For faust, `kafkatrail.downstream.faust`
has models and topics; it needs the `faust` extra (`pip install 'kafkatrail[faust]'`) and is not imported
here.
"""

from kafkatrail.downstream.iterator import events, notifications
from kafkatrail.downstream.records import CloudTrailEvent, LogFileNotification

__all__ = ["CloudTrailEvent", "LogFileNotification", "events", "notifications"]
