"""The event contract.

* ``cloudtrail_event.avsc``: the CloudTrail record as an Avro schema (conventions in its ``doc``);
* :mod:`schemas.codec`: records to bytes on Kafka and back (single-object encoding by default,
  Confluent Schema Registry framing when a registry is configured);
* :mod:`schemas.validation`: the checks a record passes before it is produced (Cython);
* :mod:`schemas.compiled`: the converters compiled from the schema; :mod:`schemas.binary`: the Avro
  body codec they plan, in C (Cython); :mod:`schemas.errors`: codec errors.
"""
