"""`key_partition` agrees with Kafka's murmur2 and with librdkafka's partitioner, so the digest worker knows the
journal partition of a chain that has no file yet."""

from __future__ import annotations

from confluent_kafka import Producer

from kafkatrail.core.topics import KEYED_PARTITIONER, key_partition


def test_kafkas_own_murmur2_vectors() -> None:
    vectors = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
               "a-little-bit-longer-string": -1486304829, "abc": 479470107,
               "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    for key, java_hash in vectors.items():
        assert key_partition(key.encode(), 2**31) == java_hash & 0x7FFFFFFF, key


def test_librdkafka_sends_each_delivery_key_to_the_partition_computed() -> None:
    keys = [f"arn:aws:cloudtrail:us-east-1:111122223333:trail/t{n}|{100000000000 + n}|eu-west-{n % 3}".encode()
            for n in range(200)]
    producer = Producer({"test.mock.num.brokers": 1, "partitioner": KEYED_PARTITIONER})
    producer.list_topics("journal", timeout=10)  # the mock cluster creates it (with 4 partitions)
    partitions = len(producer.list_topics("journal", timeout=10).topics["journal"].partitions)
    sent: dict[bytes, int] = {}
    for key in keys:
        producer.produce("journal", b"", key, on_delivery=lambda error, message: sent.update(
            {message.key(): message.partition()}))
    assert producer.flush(10) == 0
    assert partitions > 1
    assert sent == {key: key_partition(key, partitions) for key in keys}
