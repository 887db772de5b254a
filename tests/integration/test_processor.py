"""The processor against the real broker: exactly once under SIGKILL, dead letters, dedupe across restarts,
trail changes without a restart. The processor runs as `kafkatrail worker processors` in a subprocess."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import orjson
import pytest

from kafkatrail.core.settings import Settings
from kafkatrail.schemas.codec import encode_event
from kafkatrail.trails.topic import apply_trails
from tests.integration.pipeline import (
    TRAILS,
    Workers,
    delivered_pairs,
    expected_pairs,
    publish,
    publish_raw,
    read_topic,
    simulate,
    wait_for_progress,
)


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_processor_stopped_twice_mid_stream_loses_nothing_and_doubles_nothing(
        settings: Settings, processors: Workers, signal_name: str) -> None:
    records = simulate(120_000, seed=11)
    repeats = len(records) - len({r["eventID"] for r in records})
    assert 4_800 < repeats < 7_200, "about 5% of the input repeats an eventID"
    publish(settings, records)

    began = time.monotonic()
    processors.start()
    for share in (0.3, 0.65):
        wait_for_progress(settings, processors, share)
        if signal_name == "SIGKILL":
            processors.kill()
        else:
            processors.terminate()
        processors.start()
    wait_for_progress(settings, processors, 1.0)
    elapsed = time.monotonic() - began
    processors.stop_all()

    delivered = delivered_pairs(settings)
    expected = expected_pairs(records)
    doubled = {pair: n for pair, n in delivered.items() if n > 1}
    assert not doubled, f"{len(doubled)} (trail, eventID) pairs delivered more than once, e.g. {list(doubled)[:3]}"
    assert set(delivered) == expected, (f"missing {len(expected - set(delivered))}, "
                                        f"unexpected {len(set(delivered) - expected)}")
    assert len({trail for trail, _ in expected}) == 3
    aborted = len(read_topic(settings, settings.topics.delivery, "read_uncommitted")) - sum(delivered.values())
    print(f"\nkill test: {len(records):,} events ({repeats:,} repeats), 2 {signal_name}s, {len(expected):,} "
          f"(trail, eventID) pairs delivered exactly once in {elapsed:.1f} s; {aborted:,} records of "
          "transactions the kills interrupted stay invisible")


MALFORMED_KINDS = (
    lambda i, record: f"not avro {i}".encode(),                            # bad marker
    lambda i, record: orjson.dumps(record),                                # JSON instead of Avro
    lambda i, record: b"\xc3\x01" + i.to_bytes(8, "little"),               # unknown schema fingerprint
    lambda i, record: encode_event(record)[:60],                           # truncated body
    lambda i, record: encode_event({**record, "eventTime": "soon"}),       # valid Avro, invalid record
)


def test_malformed_input_goes_to_the_dead_letter_topic_and_no_valid_event_is_lost(
        settings: Settings, processors: Workers) -> None:
    records = simulate(5_000, seed=12, duplicates=0.0)
    valid = [(r["eventID"].encode(), encode_event(r)) for r in records]
    malformed = [(f"bad-{i}".encode(), MALFORMED_KINDS[i % len(MALFORMED_KINDS)](i, records[i]))
                 for i in range(1_000)]
    messages = []
    for i, (key, value) in enumerate(valid):
        messages.append((key, value, {}))
        if i % 5 == 0:
            bad_key, bad_value = malformed[i // 5]
            messages.append((bad_key, bad_value, {}))
    publish_raw(settings, messages)

    processors.start()
    wait_for_progress(settings, processors, 1.0)

    dead = read_topic(settings, settings.topics.dlq)
    assert sorted((m.key(), m.value()) for m in dead) == sorted(malformed)
    reasons = Counter(dict(m.headers())["kafkatrail.reason"].decode() for m in dead)
    assert reasons == {"undecodable.bad_marker": 400, "undecodable.unknown_fingerprint": 200,
                       "undecodable.truncated_body": 200, "invalid.eventTime.format": 200}
    details = {dict(m.headers())["kafkatrail.detail"].decode() for m in dead}
    assert any("eventTime" in text and "ISO-8601" in text for text in details)
    assert all(dict(m.headers())["kafkatrail.source"].startswith(settings.topics.events.encode()) for m in dead)
    assert set(delivered_pairs(settings)) == expected_pairs(records)


def test_a_duplicate_arriving_after_a_restart_is_still_dropped(settings: Settings, processors: Workers) -> None:
    first = simulate(2_000, seed=13, duplicates=0.0)
    publish(settings, first)
    processors.start()
    wait_for_progress(settings, processors, 1.0)
    processors.stop_all()

    later = simulate(1_000, seed=14, duplicates=0.0)
    publish(settings, first[:500] + later)
    processors.start()
    wait_for_progress(settings, processors, 1.0)

    delivered = delivered_pairs(settings)
    assert max(delivered.values()) == 1
    assert set(delivered) == expected_pairs(first + later)


def test_a_changed_trail_takes_effect_without_a_restart(settings: Settings, processors: Workers) -> None:
    processors.start()
    before = simulate(1_000, seed=15, duplicates=0.0)
    publish(settings, before)
    wait_for_progress(settings, processors, 1.0)

    everything_read = dataclasses.replace(TRAILS[0], name="org-everything", advanced_event_selectors=(
        {"Name": "all S3 data", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]},
                                                    {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}]},
        {"Name": "all management", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]},
    ))
    new_trails = (*TRAILS[1:], everything_read)
    assert apply_trails(settings, new_trails, prune=True)[TRAILS[0].arn] == "deleted"
    deadline = time.monotonic() + 30
    while f'"message":"trail removed","trail_arn":"{TRAILS[0].arn}"' not in processors.log_tail():
        assert time.monotonic() < deadline, f"the processor did not pick up the change:\n{processors.log_tail()}"
        time.sleep(0.1)
    after = simulate(1_000, seed=16, duplicates=0.0)
    publish(settings, after)
    wait_for_progress(settings, processors, 1.0)

    assert set(delivered_pairs(settings)) == expected_pairs(before) | expected_pairs(after, new_trails)
