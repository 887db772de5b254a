"""Everything that puts CloudTrail records on Kafka: the EventProducer SDK, log-file replay, the traffic simulator."""
