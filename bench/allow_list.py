"""Microbenchmark: what checking a source's account allow-list costs the processor per record.

Runs `EventPipeline.process` (decode, validate, dedupe, select with the five trails of
bench/five-trails.yaml) over the same simulated records in batches of 2,000, without an allow-list
(no `processors.sources`) and with one that allows every account of the traffic (so the records take the
same path after the check), alternating the two several times and keeping each one's best run. Also
times the check alone (`record["recipientAccountId"] not in accounts`, less the cost of the call that
times it). No Kafka: the pipeline is pure.

    .venv/bin/python bench/allow_list.py [--events 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import timeit
from pathlib import Path

from kafkatrail.processors.dedupe import DedupeWindow
from kafkatrail.processors.pipeline import EventPipeline, InputMessage
from kafkatrail.processors.selectors import Selection
from kafkatrail.processors.sources import AccountAllowList
from kafkatrail.producers.simulator import Limit, TrafficModel, TrafficSimulator
from kafkatrail.schemas.codec import default_codec, encode_event
from kafkatrail.trails.definitions import load_trails

TRAILS = Path(__file__).parent / "five-trails.yaml"
BATCH = 2_000


def run(pipeline: EventPipeline, messages: list[InputMessage], allow: AccountAllowList | None) -> float:
    """Seconds to process `messages` in batches, against a fresh dedupe window."""
    window = DedupeWindow(86_400, 3_600)
    return timeit.timeit(
        lambda: [pipeline.process(messages[i:i + BATCH], window, allow) for i in range(0, len(messages), BATCH)],
        number=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    records = list(TrafficSimulator(TrafficModel(rate=2_000, seed=3, duplicate_rate=0.05)).records(
        Limit(count=args.events)))
    messages = [InputMessage(encode_event(r), r["eventID"].encode(), 1_700_000_000 + i / 1000, i)
                for i, r in enumerate(records)]
    accounts = frozenset(r["recipientAccountId"] for r in records)
    allow = AccountAllowList("cloudtrail.events.bench", accounts | {f"{n:012d}" for n in range(100)})
    pipeline = EventPipeline(default_codec().decode, Selection(load_trails(TRAILS)))

    best = {"no allow-list": float("inf"), "allow-list": float("inf")}
    for _ in range(args.rounds):
        best["no allow-list"] = min(best["no allow-list"], run(pipeline, messages, None))
        best["allow-list"] = min(best["allow-list"], run(pipeline, messages, allow))
    for name, seconds in best.items():
        print(f"{name:>14}: {args.events / seconds:>9,.0f} records/s ({seconds / args.events * 1e6:.2f} us/record, "
              f"best of {args.rounds})")
    extra = (best["allow-list"] - best["no allow-list"]) / args.events * 1e9
    print(f"    difference: {extra:+.0f} ns/record ({extra / (best['no allow-list'] / args.events * 1e9):+.2%})")

    record = records[0]
    members = allow.accounts
    per_check = min(timeit.repeat(lambda: record["recipientAccountId"] not in members, number=1_000_000,
                                  repeat=5)) / 1_000_000
    per_call = min(timeit.repeat(lambda: record, number=1_000_000, repeat=5)) / 1_000_000
    print(f"the check alone: {(per_check - per_call) * 1e9:.0f} ns/record ({per_check * 1e9:.0f} ns with the call "
          f"that times it, {per_call * 1e9:.0f} ns without the check; {len(members)} accounts on the list)")


if __name__ == "__main__":
    main()
