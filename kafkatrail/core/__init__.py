"""The ground every stage stands on: typed settings, Kafka topics and clients, logging and metrics.

Nothing here imports from kafkatrail's stages or entry points; only the event contract (`kafkatrail.schemas`)
lies below it.
"""
