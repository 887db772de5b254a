"""A faust app for tests/integration/test_downstream.py, run as a worker subprocess:

    KAFKATRAIL_BOOTSTRAP_SERVERS=... KAFKATRAIL_TOPIC_PREFIX=... DOWNSTREAM_APP_ID=... DOWNSTREAM_OUT=out.jsonl \
        python -m faust -A tests.integration.faust_app worker -l warning --web-port <port>

Its agents subscribe with `kafkatrail.downstream.faust` and append one JSON line per message received to
DOWNSTREAM_OUT: the topic, the key and value as faust delivered them (their model names and their fields).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faust
import orjson

from kafkatrail.core.settings import load_settings
from kafkatrail.downstream.faust import app_config, events_topic, notifications_topic

settings = load_settings()
OUT = Path(os.environ["DOWNSTREAM_OUT"])

app = faust.App(os.environ["DOWNSTREAM_APP_ID"], **app_config(settings), datadir=str(OUT.parent / "faust-data"),
                consumer_auto_offset_reset="earliest")


def write(topic: str, key: Any, value: faust.Record) -> None:
    """One line per message, flushed at once (the test reads the file while the worker runs)."""
    line = {"topic": topic, "key_type": type(key).__name__, "value_type": type(value).__name__,
            "key": key.asdict() if isinstance(key, faust.Record) else key, "value": value.asdict()}
    with OUT.open("ab") as out:
        out.write(orjson.dumps(line) + b"\n")


@app.agent(notifications_topic(app, settings))
async def on_notification(stream: faust.StreamT) -> None:
    async for trail_arn, notice in stream.items():
        write("notifications", trail_arn, notice)


@app.agent(events_topic(app, settings))
async def on_event(stream: faust.StreamT) -> None:
    async for key, event in stream.items():
        write("delivery", key, event)
