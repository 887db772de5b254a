"""kafkatrail: an audit trail for API calls that behaves like AWS CloudTrail, on Apache Kafka.

The package's layers, bottom to top: `kafkatrail.schemas` (the wire contract) and `kafkatrail.deploy` (files
read at run time); `kafkatrail.core` (settings, topics, logging, metrics); `kafkatrail.trails`;
`kafkatrail.runtime` (the worker runtime); the stages `kafkatrail.producers`, `kafkatrail.processors`,
`kafkatrail.sinks` and `kafkatrail.downstream`; and the entry points (`kafkatrail.cli` and what it starts).
"""

__version__ = "0.2.0"
