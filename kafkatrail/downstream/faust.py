"""faust models and topics for kafkatrail's output topics (needs faust-streaming: `pip install 'kafkatrail[faust]'`).

    app = faust.App("my-app", **app_config(settings))

    @app.agent(events_topic(app, settings))
    async def on_event(stream):
        async for key, event in stream.items():   # key: DeliveryKeyModel, event: CloudTrailEventModel
            ...

The topics decode with kafkatrail's own rules (`kafkatrail.downstream.records`, hence the contract), and
faust builds the models below from what they decode. The models mirror the records of
`kafkatrail.downstream.records`, split as the topics split them: the trail ARN (and for events the account
and region) is the message key, the rest is the value; `CloudTrailEvent.raw` has no counterpart (`record`
holds the parsed record). Models serialize as JSON (`record` is typed `dict[str, Any]` and round-trips),
so an app can forward them to its own topics; the kafkatrail topics' codecs only decode.

Read-committed: the delivery topic is written in Kafka transactions. faust-streaming has no setting for the
consumer's isolation level: its aiokafka consumer reads read_uncommitted unless the app's
`processing_guarantee` is `exactly_once` (then read_committed; see `_create_worker_consumer` in
`faust/transport/drivers/aiokafka.py`). `app_config` sets it, and `events_topic` refuses an app without
it. Side effect: such an app also sends what it produces and commits its offsets through faust's
transactional producers (one per assigned partition), which needs a broker with transactions (kafkatrail
needs them anyway); faust routes each send to the producer of its destination partition, which
processors/worker.py explains is only exactly-once for output partitioned like the input.

A message that does not decode is logged (where it is and why, never its content) and skipped, as by the
iterator: faust acknowledges it, and these topics do not raise the error into the agent's stream (faust's
default, which crashes and restarts the agent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

try:
    import faust
    from faust.serializers.codecs import Codec
    from faust.types import AppT, Message, TopicT
    from faust.types.enums import ProcessingGuarantee
except ImportError as exc:
    raise ImportError(
        f"kafkatrail.downstream.faust needs faust-streaming ({exc}): pip install 'kafkatrail[faust]'"
    ) from exc

from kafkatrail.core.settings import Settings
from kafkatrail.downstream.records import delivery_key, event_fields, notification, trail_arn

log = logging.getLogger(__name__)


class LogFileNotificationModel(faust.Record, serializer="json"):
    """The value of a notification (its key is the trail ARN): the bucket and the new log files' keys."""

    bucket: str
    object_keys: list[str]


class DeliveryKeyModel(faust.Record, serializer="json"):
    """The key of a delivery record: the trail, and the account and region whose log files hold it."""

    trail_arn: str
    account: str
    region: str


class CloudTrailEventModel(faust.Record, serializer="json"):
    """The value of a delivery record: one CloudTrail event record, its main fields and the whole of it."""

    event_id: str
    event_time: str
    event_time_ms: int
    event_source: str
    event_name: str
    record: dict[str, Any]


class _Decoder(Codec):
    """A read-only codec: `decode` turns a key or value of a kafkatrail topic into what faust builds on."""

    def __init__(self, children: tuple[Codec, ...] | None = None, *, decode: Callable[[bytes], Any]) -> None:
        super().__init__(children, decode=decode)
        self.decode = decode

    def _loads(self, s: bytes) -> Any:
        return self.decode(s)


class _SkippingTopic(faust.Topic):
    """A topic whose undecodable messages are logged and skipped (faust has acknowledged them already)."""

    async def on_key_decode_error(self, exc: Exception, message: Message) -> None:
        _skipped(exc, message)

    async def on_value_decode_error(self, exc: Exception, message: Message) -> None:
        _skipped(exc, message)


def _skipped(exc: Exception, message: Message) -> None:
    log.warning("skipped a record that does not decode", extra={
        "topic": message.topic, "partition": message.partition, "offset": message.offset, "reason": str(exc)})


def _notification_fields(value: bytes) -> dict[str, Any]:
    notice = notification(value)
    return {"bucket": notice.s3_bucket, "object_keys": list(notice.s3_object_keys)}


def app_config(settings: Settings) -> dict[str, Any]:
    """`faust.App` keyword arguments for kafkatrail's cluster: its brokers, and `exactly_once` (read-committed).

    Only `bootstrap_servers` carries over; give faust `broker_credentials` for SASL/SSL yourself.
    """
    return {
        "broker": [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")],
        "processing_guarantee": ProcessingGuarantee.EXACTLY_ONCE.value,
    }


def notifications_topic(app: AppT, settings: Settings) -> TopicT:
    """The notifications topic: keys are trail ARNs (`str`), values `LogFileNotificationModel`.

    faust passes a missing key as None without decoding it (the S3 sink always sets one).
    """
    return _SkippingTopic(app, topics=[settings.topics.notifications], key_type=str,
                          value_type=LogFileNotificationModel, key_serializer=_Decoder(decode=trail_arn),
                          value_serializer=_Decoder(decode=_notification_fields))


def events_topic(app: AppT, settings: Settings) -> TopicT:
    """The delivery topic: keys `DeliveryKeyModel`, values `CloudTrailEventModel`; the app must be exactly_once.

    Raises ValueError for an app whose `processing_guarantee` is not `exactly_once`: its consumer would read
    records of aborted transactions too.
    """
    guarantee: object = app.conf.processing_guarantee  # faust annotates the setting as the enum's type
    if guarantee != ProcessingGuarantee.EXACTLY_ONCE:
        raise ValueError(
            f"events_topic: the app must have processing_guarantee='exactly_once' (got "
            f"{app.conf.processing_guarantee.value!r}): only then does faust read the delivery topic "
            f"read_committed; build the app with faust.App(..., **app_config(settings))")
    return _SkippingTopic(app, topics=[settings.topics.delivery], key_type=DeliveryKeyModel,
                          value_type=CloudTrailEventModel,
                          key_serializer=_Decoder(decode=lambda key: asdict(delivery_key(key))),
                          value_serializer=_Decoder(decode=event_fields))
