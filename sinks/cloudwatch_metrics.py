"""The CloudWatch Logs sink's metrics (names per docs/operations.md §7: kafkatrail_cloudwatch_<what>_<unit>)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from kafkatrail.core.aws import AwsCallMetrics

# Event time to acceptance: CloudTrail's own delay is about 5 minutes; replayed records can be days old.
LATENCY_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3_600.0, 21_600.0, 86_400.0, 1_209_600.0)


class CloudWatchMetrics:
    """Every metric one CloudWatch Logs sink process serves on /metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.sent = Counter(
            "kafkatrail_cloudwatch_events_sent_total", "Records PutLogEvents accepted", registry=registry)
        self.skipped = Counter(
            "kafkatrail_cloudwatch_events_skipped_total",
            "Records not sent to CloudWatch Logs, by reason (oversize, no_log_group, unknown_trail, unreadable, "
            "log_group_missing, invalid_parameter, rejected_too_old, rejected_too_new, rejected_expired)",
            ["reason"], registry=registry)
        self.calls = Counter(
            "kafkatrail_cloudwatch_put_log_events_calls_total", "PutLogEvents calls made, failed ones included",
            registry=registry)
        self.aws = AwsCallMetrics(registry)
        self.streams_created = Counter(
            "kafkatrail_cloudwatch_streams_created_total", "Log streams this process created", registry=registry)
        self.latency = Histogram(
            "kafkatrail_cloudwatch_event_latency_seconds", "From a record's eventTime to PutLogEvents accepting it",
            buckets=LATENCY_BUCKETS_S, registry=registry)
        self.pending = Gauge(
            "kafkatrail_cloudwatch_pending_events", "Records read from the delivery topic and not yet sent",
            registry=registry)
