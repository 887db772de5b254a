"""Round trips through the real broker with both client libraries kafkatrail uses.

confluent-kafka (librdkafka) carries producers and sinks; aiokafka carries faust's processors. Both must
produce, consume in a group, commit, and resume from the committed offset on the pinned Kafka version.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kafkatrail.stack import Endpoints


def _new_topic(stack: Endpoints, partitions: int = 3) -> str:
    name = f"test.{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    return name


def _produce(stack: Endpoints, topic: str, values: list[str], **config: object) -> None:
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers, "enable.idempotence": True, **config})
    failures: list[KafkaError] = []
    for value in values:
        producer.produce(topic, key=value, value=value,
                         on_delivery=lambda err, _msg: failures.append(err) if err else None)
    assert producer.flush(30) == 0
    assert failures == []


def _consume(stack: Endpoints, topic: str, group: str, expected: int, **config: object) -> list[str]:
    """Read `expected` messages in a consumer group, commit synchronously, and close."""
    consumer = Consumer({
        "bootstrap.servers": stack.bootstrap_servers, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, **config,
    })
    consumer.subscribe([topic])
    seen: list[str] = []
    for _ in range(60):
        if len(seen) >= expected:
            break
        for message in consumer.consume(num_messages=500, timeout=0.5):
            assert message.error() is None, message.error()
            seen.append(message.value().decode())
    if seen:
        consumer.commit(asynchronous=False)
    consumer.close()
    return seen


def test_confluent_kafka_group_commit_and_resume(stack: Endpoints) -> None:
    topic = _new_topic(stack)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = [f"first-{i}" for i in range(100)]
    _produce(stack, topic, first)
    assert sorted(_consume(stack, topic, group, len(first))) == sorted(first)

    second = [f"second-{i}" for i in range(50)]
    _produce(stack, topic, second)
    resumed = _consume(stack, topic, group, len(second))
    assert sorted(resumed) == sorted(second), "a new member of the group must start at the committed offsets"


def test_confluent_kafka_transactions_hide_aborted_writes(stack: Endpoints) -> None:
    topic = _new_topic(stack, partitions=1)
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers, "transactional.id": f"tx-{uuid.uuid4()}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=f"aborted-{i}")
    assert producer.flush(30) == 0, "the aborted writes must reach the broker, or abort would just purge them"
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=f"committed-{i}")
    producer.commit_transaction(30)

    seen = _consume(stack, topic, f"g-{uuid.uuid4().hex[:8]}", 10, **{"isolation.level": "read_committed"})
    assert seen == [f"committed-{i}" for i in range(10)]
    uncommitted_view = _consume(stack, topic, f"g-{uuid.uuid4().hex[:8]}", 20,
                                **{"isolation.level": "read_uncommitted"})
    assert len([v for v in uncommitted_view if v.startswith("aborted-")]) == 10


async def _aiokafka_consume(stack: Endpoints, topic: str, group: str, expected: int) -> list[str]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.bootstrap_servers, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(seen) < expected:
                batches = await consumer.getmany(timeout_ms=500)
                seen.extend(m.value.decode() for messages in batches.values() for m in messages)
        await consumer.commit()
    finally:
        await consumer.stop()
    return seen


async def _aiokafka_roundtrip(stack: Endpoints) -> None:
    topic = _new_topic(stack)
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        first = [f"first-{i}" for i in range(100)]
        await asyncio.gather(*[await producer.send(topic, v.encode(), key=v.encode()) for v in first])
        assert sorted(await _aiokafka_consume(stack, topic, group, len(first))) == sorted(first)

        second = [f"second-{i}" for i in range(50)]
        await asyncio.gather(*[await producer.send(topic, v.encode(), key=v.encode()) for v in second])
        resumed = await _aiokafka_consume(stack, topic, group, len(second))
        assert sorted(resumed) == sorted(second)
    finally:
        await producer.stop()

    checker = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap_servers, group_id=group)
    await checker.start()
    try:
        committed = [await checker.committed(AioTopicPartition(topic, p)) for p in range(3)]
        assert sum(committed) == 150, "committed offsets must cover all 150 messages"
    finally:
        await checker.stop()


def test_aiokafka_group_commit_and_resume(stack: Endpoints) -> None:
    """faust's client library on the same broker: produce, consume in a group, commit, resume."""
    asyncio.run(_aiokafka_roundtrip(stack))


def test_messages_cross_between_the_two_client_libraries(stack: Endpoints) -> None:
    """What confluent-kafka writes, aiokafka reads: producers and processors use different clients."""
    topic = _new_topic(stack)
    values = [f"cross-{i}" for i in range(20)]
    _produce(stack, topic, values, **{"compression.type": "zstd"})
    seen = asyncio.run(_aiokafka_consume(stack, topic, f"g-{uuid.uuid4().hex[:8]}", len(values)))
    assert sorted(seen) == sorted(values)


@pytest.mark.parametrize("compression", ["gzip", "lz4", "zstd", "snappy"])
def test_compressed_batches_round_trip(stack: Endpoints, compression: str) -> None:
    topic = _new_topic(stack, partitions=1)
    values = [f"{compression}-{i}" * 20 for i in range(50)]
    _produce(stack, topic, values, **{"compression.type": compression})
    assert _consume(stack, topic, f"g-{uuid.uuid4().hex[:8]}", len(values)) == values
