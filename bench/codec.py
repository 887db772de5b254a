"""Benchmark: per-record cost of validation, encoding and decoding, one thread, no broker.

Times validate_event, encode_event and decode_event on the produce benchmark's ~1.7 KB record (20,000
copies with their own eventIDs) and on the 310 real records of tests/data/real, and, for comparison,
decoding with fastavro's schemaless_reader followed by the converter to the CloudTrail record. Prints
the best of several rounds in µs per record (the machine may be shared: the best round is the one
least disturbed).

    .venv/bin/python bench/codec.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import orjson
from produce import sample_records

from kafkatrail.schemas.codec import current_schema, decode_event, encode_event, from_avro
from kafkatrail.schemas.validation import validate_event

REAL = Path(__file__).parents[1] / "tests/data/real/stratus-detonation-logs"


def best_us(function: Callable[[Any], Any], items: list[Any], rounds: int) -> float:
    """The fastest of ``rounds`` passes over ``items``, in µs per item."""
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - began)
    return best / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    schema = current_schema()

    def fastavro_decode(data: bytes) -> dict[str, Any]:
        return from_avro(fastavro.schemaless_reader(io.BytesIO(data[10:]), schema.parsed, None))

    sample = sample_records(20_000)
    real = [record for path in sorted(REAL.glob("*.json")) for record in orjson.loads(path.read_bytes())]
    for label, records in ((f"{len(orjson.dumps(sample[0]))} B record", sample), (f"{len(real)} real records", real)):
        encoded = [encode_event(record) for record in records]
        print(f"{label} (mean {sum(map(len, encoded)) / len(encoded):,.0f} B encoded): "
              f"validate {best_us(validate_event, records, rounds):.2f} µs, "
              f"encode {best_us(encode_event, records, rounds):.2f} µs, "
              f"decode {best_us(decode_event, encoded, rounds):.2f} µs; "
              f"fastavro reader + converter {best_us(fastavro_decode, encoded[:2000], 1):.1f} µs")


if __name__ == "__main__":
    main()
