"""The processor's Prometheus metrics (names per docs/operations.md §7: kafkatrail_processor_<what>_<unit>)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ProcessorMetrics:
    """Every metric one processor process serves on /metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.events_in = Counter(
            "kafkatrail_processor_events_in_total", "Messages read from the events topic", registry=registry)
        self.invalid = Counter(
            "kafkatrail_processor_invalid_events_total", "Messages sent to the dead-letter topic, by reason",
            ["reason"], registry=registry)
        self.duplicates = Counter(
            "kafkatrail_processor_duplicates_dropped_total", "Records dropped because their eventID was seen",
            registry=registry)
        self.selected = Counter(
            "kafkatrail_processor_selected_events_total", "(trail, event) pairs sent to the delivery topic",
            ["trail"], registry=registry)
        self.latency = Histogram(
            "kafkatrail_processor_latency_seconds",
            "From the event's Kafka timestamp to the commit of the transaction that processed it",
            buckets=LATENCY_BUCKETS_S, registry=registry)
        self.conflicts = Counter(
            "kafkatrail_processor_eventid_conflicts_total",
            "Records dead-lettered because a record with their eventID and other content came first",
            registry=registry)
        self.dedupe_entries = Gauge(
            "kafkatrail_processor_dedupe_entries", "eventIDs held in the dedupe window of this process",
            registry=registry)
        self.transactions = Counter(
            "kafkatrail_processor_transactions_total", "Kafka transactions, by outcome", ["outcome"],
            registry=registry)
        self.trails = Gauge(
            "kafkatrail_processor_trails", "Trails this process is applying", registry=registry)
