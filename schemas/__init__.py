"""The event contract.

* ``cloudtrail_event.avsc``: the CloudTrail record as an Avro schema (conventions in its ``doc``);
* :mod:`kafkatrail.schemas.codec`: records to bytes on Kafka and back (single-object encoding by default,
  Confluent Schema Registry framing when a registry is configured);
* :mod:`kafkatrail.schemas.validation`: the checks a record passes before it is produced (Cython);
* :mod:`kafkatrail.schemas.compiled`: the converters compiled from the schema;
  :mod:`kafkatrail.schemas.binary`: the Avro body codec they plan, in C (Cython);
* :mod:`kafkatrail.schemas.errors`: codec errors;
* :mod:`kafkatrail.schemas.log_files`: CloudTrail log file bodies and their S3 keys.
"""
