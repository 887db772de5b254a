"""A consume-transform-produce loop on Kafka transactions, with per-partition state kept in a changelog topic.

It is a `kafkatrail.runtime.worker.Worker` (consumer, trails feed, loop, stop); this module adds the
transactional producer, the per-partition state and one transaction per consumed batch.

The processor (`processors/worker.py`) and the Insights worker (`processors/insights_worker.py`) are both
this loop; each supplies the state of one input partition and what to do with a batch of it. One batch
is one transaction carrying the output, the changelog records of the state it changed and the consumed
offsets (KIP-447: `send_offsets_to_transaction` with the consumer's group metadata), so output, state
and position move together or not at all:

- `transactional.id` is `<group id>-<instance id>`: a restarted process fences its dead predecessor and
  aborts its open transaction before it reads anything.
- The loop may read several input topics, each with a changelog of its own (the processor can read one
  topic per producer principal). State is kept per (topic, partition), so partition p of two topics never
  shares a state, and one transaction carries the offsets of every partition of the batch.
- On assignment, each partition's state is restored read_committed from the partition with the same number
  of its topic's changelog (each changelog is co-partitioned with its input; `start` checks the partition
  counts).
- A transaction error that needs an abort rewinds every assigned partition to its committed offset and
  restores its state, so the batch is processed again from the state it started from.
- Every blocking transaction call runs under a deadline of its own timeout plus `WEDGED_AFTER_S`: when the
  group coordinator's broker died and came back, librdkafka 2.x can wait in `send_offsets_to_transaction`
  forever, whatever its timeout (confluentinc/librdkafka#5456 and #5511; seen here after a broker SIGKILL).
  Past the deadline the producer is given up as wedged (never closed: that would wait too) and a
  `TimeoutError` goes to the supervisor (`kafkatrail.runtime.supervisor`), which builds the worker again:
  the new producer's `init_transactions` fences the wedged one and aborts its transaction.
- A transaction the broker aborted itself because it stayed open past `transaction.timeout.ms` (the broker
  was down or unreachable that long) bumps the producer's epoch, so this producer's next call is refused as
  fenced, although no other instance exists. A fenced error on a transaction older than that timeout is
  therefore raised as a `TimeoutError`, and the supervisor builds the worker again with a new epoch. A fenced
  error on a younger transaction means another process took the transactional id, and ends this one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, Producer, TopicPartition

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.metrics import Health
from kafkatrail.core.settings import Settings, TransactionalWorkerSettings
from kafkatrail.core.topics import reader, until_end
from kafkatrail.runtime.supervisor import FENCED_CODES
from kafkatrail.runtime.worker import Worker

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 30.0
RESTORE_TIMEOUT_S = 600.0
COMMIT_ATTEMPTS = 5
FULL_QUEUE_WAIT_S = 0.05
WEDGED_AFTER_S = 10.0
Result = TypeVar("Result")

State = TypeVar("State")


class TransactionalLoop(Worker, Generic[State]):
    """Subclasses say what the state of a partition is and how a batch of one partition is transformed."""

    def __init__(self, settings: Settings, config: TransactionalWorkerSettings, *, changelogs: Mapping[str, str],
                 batch_max_events: int, batch_timeout_s: float, count_transaction: Callable[[str], None],
                 producer_config: dict[str, Any] | None = None, health: Health | None = None) -> None:
        """`changelogs`: each input topic and the changelog topic of its partitions' state (one per input)."""
        if not changelogs or len(set(changelogs.values())) != len(changelogs):
            raise ValueError(f"each input topic needs a changelog of its own: {dict(changelogs)}")
        super().__init__(settings, config, ",".join(changelogs), health=health, **{"queued.min.messages": 100_000})
        self.config = config
        self.consume_max = batch_max_events
        self.consume_timeout_s = batch_timeout_s
        self.topics = settings.topics
        self.changelogs = dict(changelogs)
        self._inputs_of = {changelog: topic for topic, changelog in self.changelogs.items()}
        self.count_transaction = count_transaction
        self.states: dict[tuple[str, int], State] = {}
        self._wedged = False
        self.producer = Producer(kafka_config(settings, **{
            "transactional.id": f"{config.group_id}-{config.instance_id}",
            "transaction.timeout.ms": config.transaction_timeout_s * 1000,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
            **(producer_config or {}),
        }))

    # What a subclass provides (and `trail_changed`, from `Worker`).

    def new_state(self) -> State:
        """The state of a partition nothing has been recorded for."""
        raise NotImplementedError

    def restore_record(self, state: State, message: Message) -> None:
        """Apply one changelog record to a partition's state."""
        raise NotImplementedError

    def restored(self, state: State) -> None:
        """Called once a partition's state has read its whole changelog."""

    def transform(self, partition: int, messages: list[Message], state: State) -> Any:
        """Turn one partition's batch into output (with `produce`) inside the open transaction; the result goes
        to `committed` once the transaction commits. `messages` are all of one topic (`messages[0].topic()`)."""
        raise NotImplementedError

    def idle_due(self, state: State) -> bool:
        """Whether a partition that received nothing in this poll has output to write anyway (default: never)."""
        return False

    def idle(self, partition: int, state: State) -> Any:
        """The output of a partition `idle_due` chose, written (with `produce`) in the open transaction; the
        result goes to `committed` with the batch's."""
        raise NotImplementedError

    def committed(self, results: list[Any]) -> None:
        """The transaction holding `results` committed (count metrics here)."""

    def states_changed(self) -> None:
        """Partitions were assigned, revoked or restored."""

    # The runtime's hooks.

    def start(self) -> None:
        """Fence a crashed predecessor (same transactional id) and check the changelog's partitions."""
        self._bounded("init_transactions", lambda: self.producer.init_transactions(KAFKA_TIMEOUT_S))
        self._check_copartitioned()
        log.info("transactions ready", extra={"instance_id": self.config.instance_id})

    def handle_batch(self, records: list[Message]) -> None:
        """One transaction: the output, the changed state and the offsets of `records`, and the output of
        the other partitions that are `idle_due`."""
        polled = {(message.topic(), message.partition()) for message in records}
        idle = [key for key, state in self.states.items() if key not in polled and self.idle_due(state)]
        if records or idle:
            self._process(records, idle)

    def closed(self) -> None:
        if not self._wedged:
            self.producer.close()

    def _bounded(self, what: str, call: Callable[[], Result], timeout_s: float = KAFKA_TIMEOUT_S) -> Result:
        """`call()`'s result or exception, or TimeoutError once it has run `timeout_s + WEDGED_AFTER_S` (the
        producer is then given up: see the module docstring)."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = call()
            except BaseException as exc:  # handed to the caller's thread below
                outcome["error"] = exc

        thread = threading.Thread(target=run, name=f"txn-{what}", daemon=True)
        thread.start()
        thread.join(timeout_s + WEDGED_AFTER_S)
        if thread.is_alive():
            self._wedged = True
            raise TimeoutError(f"{what} did not return within {timeout_s + WEDGED_AFTER_S:.0f} s: the transactional "
                               "producer is wedged (librdkafka #5456, #5511)")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def produce(self, topic: str, key: bytes | None, value: bytes | None, **extra: Any) -> None:
        """Queue a record in the open transaction, waiting for room when librdkafka's queue is full."""
        while True:
            try:
                self.producer.produce(topic, value, key, **extra)
                return
            except BufferError:
                self.producer.poll(FULL_QUEUE_WAIT_S)

    def _check_copartitioned(self) -> None:
        metadata = self.consumer.list_topics(timeout=KAFKA_TIMEOUT_S).topics
        for pair in self.changelogs.items():
            counts = {}
            for name in pair:
                topic = metadata.get(name)
                if topic is None or topic.error is not None:
                    raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                    f"topic {name} does not exist: run `kafkatrail topics create`"))
                counts[name] = len(topic.partitions)
            if len(set(counts.values())) != 1:
                raise KafkaException(KafkaError(KafkaError.INVALID_PARTITIONS,
                                                f"the changelog must have as many partitions as its input: {counts}"))

    def attach(self) -> None:
        """Subscribe to every input topic."""
        self.consumer.subscribe(list(self.changelogs), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        self.states.update(self._restore([(tp.topic, tp.partition) for tp in partitions]))
        self.states_changed()

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Nothing to commit: every batch committed its offsets in its transaction."""
        for tp in partitions:
            self.states.pop((tp.topic, tp.partition), None)
        self.states_changed()

    def _restore(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], State]:
        """The states of `partitions` ((input topic, partition) pairs), as their committed changelogs record them."""
        states = {key: self.new_state() for key in partitions}
        if not partitions:
            return states
        by_changelog: dict[str, list[int]] = defaultdict(list)
        for topic, partition in partitions:
            by_changelog[self.changelogs[topic]].append(partition)
        for changelog, numbers in by_changelog.items():  # a reader per changelog: until_end counts partitions
            topic = self._inputs_of[changelog]
            consumer = reader(self.settings, f"{self.config.group_id}-restore")
            try:
                consumer.assign([TopicPartition(changelog, p, OFFSET_BEGINNING) for p in numbers])
                for message in until_end(consumer, numbers, RESTORE_TIMEOUT_S, changelog):
                    self.restore_record(states[topic, message.partition()], message)
            finally:
                consumer.close()
        for state in states.values():
            self.restored(state)
        return states

    def _process(self, messages: list[Message], idle: list[tuple[str, int]]) -> None:
        by_partition: dict[tuple[str, int], list[Message]] = defaultdict(list)
        for message in messages:
            by_partition[message.topic(), message.partition()].append(message)
        began = time.monotonic()
        self.producer.begin_transaction()
        results, offsets = [], []
        for key, batch in by_partition.items():
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = self._restore([key])[key]
            topic, partition = key
            results.append(self.transform(partition, batch, state))
            offsets.append(TopicPartition(topic, partition, batch[-1].offset() + 1))
        for topic, partition in idle:
            results.append(self.idle(partition, self.states[topic, partition]))
        try:
            committed = self._commit(offsets)
        except KafkaException as exc:
            if fenced(exc) and time.monotonic() - began >= self.config.transaction_timeout_s:
                raise TimeoutError(f"the broker aborted a transaction open past its timeout of "
                                   f"{self.config.transaction_timeout_s} s (producer epoch bumped)") from exc
            raise
        if committed:
            self.committed(results)
        else:
            self._rewind()

    def _commit(self, offsets: list[TopicPartition]) -> bool:
        """Commit the open transaction with `offsets`; False when it had to be aborted."""
        try:
            metadata = self.consumer.consumer_group_metadata()
            if offsets:  # an idle partition's output alone consumed nothing
                self._bounded("send_offsets_to_transaction", lambda: self.producer.send_offsets_to_transaction(
                    offsets, metadata, KAFKA_TIMEOUT_S))
            for attempt in range(COMMIT_ATTEMPTS):
                try:
                    self._bounded("commit_transaction", lambda: self.producer.commit_transaction(KAFKA_TIMEOUT_S))
                    break
                except KafkaException as exc:
                    if not exc.args[0].retriable() or attempt == COMMIT_ATTEMPTS - 1:
                        raise
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise
            log.warning("transaction aborted; rewinding to the committed offsets", extra={"error": error.str()})
            self._bounded("abort_transaction", lambda: self.producer.abort_transaction(KAFKA_TIMEOUT_S))
            self.count_transaction("aborted")
            return False
        self.count_transaction("committed")
        return True

    def _rewind(self) -> None:
        committed = self.consumer.committed(self.consumer.assignment(), timeout=KAFKA_TIMEOUT_S)
        for tp in committed:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else
                                              OFFSET_BEGINNING))
        self.states = self._restore([(tp.topic, tp.partition) for tp in committed])
        self.states_changed()


def fenced(exc: KafkaException) -> bool:
    """True when Kafka refused the producer as fenced (a newer epoch of its transactional id exists)."""
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() in FENCED_CODES
