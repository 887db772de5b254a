"""Where simulated traffic goes: Kafka (paced in real time or fast-forward) or CloudTrail log files."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from kafkatrail.producers.event_producer import EventProducer
from kafkatrail.producers.simulator import Limit, Record, TrafficSimulator
from kafkatrail.schemas.log_files import log_file_body, log_file_key, unique_part

LOG_FILE_PERIOD = timedelta(minutes=5)


def simulate_to_kafka(sim: TrafficSimulator, producer: EventProducer, limit: Limit, paced: bool = True) -> int:
    """Emit simulated records; when paced, second N of event time is sent at wall-clock second N."""
    began = time.monotonic()
    emitted = 0
    for offset, (_, batch) in enumerate(sim.seconds(limit)):
        if paced:
            time.sleep(max(0.0, offset - (time.monotonic() - began)))
        for record in batch:
            producer.emit(record)
        emitted += len(batch)
    producer.flush()
    return emitted


def simulate_to_files(sim: TrafficSimulator, out_dir: Path, limit: Limit) -> list[Path]:
    """Write records as CloudTrail would: one file per account, region and 5 minutes, in the S3 layout."""
    names = random.Random(sim.model.seed)
    open_files: dict[tuple[str, str], list[Record]] = defaultdict(list)
    written: list[Path] = []
    window_end: datetime | None = None

    def close_all(delivered_at: datetime) -> None:
        for (account, region), records in sorted(open_files.items()):
            path = out_dir / log_file_key(account, region, delivered_at, unique_part(names))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(log_file_body(records))
            written.append(path)
        open_files.clear()

    for moment, batch in sim.seconds(limit):
        if window_end is None:
            window_end = moment + LOG_FILE_PERIOD
        if moment >= window_end:
            close_all(window_end)
            window_end += LOG_FILE_PERIOD
        for record in batch:
            open_files[(record["recipientAccountId"], record["awsRegion"])].append(record)
    if open_files and window_end is not None:
        close_all(window_end)
    return written
