"""Benchmark: peak memory and CPU of each role under `kafkatrail run` at a steady event rate (the figures the
Kubernetes manifests in deploy/k8s request).

Starts `kafkatrail run` with every worker role on a fresh topic prefix (the demo trails, their bucket, SNS topic
and log group created in the AWS stand-in), then `kafkatrail simulate --rate R --duration D` paced to wall-clock
time in a process of its own (its CPU is not counted), and samples each role's child every second from /proc:
CPU time used (utime + stime) and peak resident set (VmHWM). Prints per role the peak RSS, the mean CPU over the
traffic window and the busiest 5 s, and how many events the processors took in; on a machine too busy to
simulate the rate asked, the mean CPU scaled to that rate as well. Uses the broker in
KAFKATRAIL_BOOTSTRAP_SERVERS and the AWS stand-in in AWS_ENDPOINT_URL.

    .venv/bin/python bench/node_resources.py [--rate 5000] [--seconds 60] [--flush 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

import boto3
import orjson
from workers import peak_rss_mib

from kafkatrail.core.metrics import scrape, totals
from kafkatrail.core.settings import Settings, settings_environment, shipped_file
from kafkatrail.core.topics import create_topics
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.definitions import load_trails
from kafkatrail.trails.topic import apply_trails

ROLES = ("processors", "insights", "s3", "cloudwatch", "digests", "s3-insights", "cloudwatch-insights", "history")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def node_settings(prefix: str, folder: Path, flush_s: float) -> Settings:
    sections = {role.replace("-", "_"): {"group_id": f"{prefix}-{role}", "metrics_port": free_port()}
                for role in ROLES}
    sections["s3"]["flush_interval_s"] = flush_s
    sections["history"]["store_path"] = str(folder / "history.sqlite3")
    return Settings(topic_prefix=prefix, keys={"folder": folder / "keys"}, **sections)


def create_destinations() -> None:
    s3, sns, logs = boto3.client("s3"), boto3.client("sns"), boto3.client("logs")
    for trail in load_trails(shipped_file("trails.demo.yaml")):
        s3.create_bucket(Bucket=trail.s3_bucket_name)
        if trail.sns_topic_name:
            sns.create_topic(Name=trail.sns_topic_name)
        if trail.cloud_watch_logs_log_group_arn:
            group = trail.cloud_watch_logs_log_group_arn.split(":log-group:", 1)[1].removesuffix(":*")
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_group(logGroupName=group)


def children(output: Path) -> dict[str, int]:
    """role -> pid of its latest child, from `kafkatrail run`'s JSON lines."""
    pids = {}
    for line in output.read_text().splitlines():
        if line.startswith("{") and (entry := orjson.loads(line))["message"] == "role started":
            pids[entry["role"]] = entry["pid"]
    return pids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--flush", type=float, default=30, help="the S3 sink's flush interval (s)")
    args = parser.parse_args()

    prefix = f"bench-node-{uuid.uuid4().hex[:6]}"
    folder = Path(tempfile.mkdtemp(prefix="kt-node-bench-"))
    settings = node_settings(prefix, folder, args.flush)
    create_topics(settings)
    create_destinations()
    apply_trails(settings, load_trails(shipped_file("trails.demo.yaml")))
    env = {**os.environ, **settings_environment(settings)}
    output = folder / "run.out"
    with output.open("wb") as out:
        node = subprocess.Popen([sys.executable, "-m", "kafkatrail.cli", "run", "--roles", *ROLES,
                                 "--log-dir", str(folder / "logs")], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(children(output)) < len(ROLES) or not all(
                scrape(f"http://127.0.0.1:{getattr(settings, role.replace('-', '_')).metrics_port}/metrics") is not None
                for role in ROLES):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the roles did not all start:\n{output.read_text()[-2000:]}")
            time.sleep(0.5)
        time.sleep(5)  # partitions assigned, trails read
        pids = children(output)
        print(f"{len(ROLES)} roles under `kafkatrail run`; simulating {args.seconds:g} s at {args.rate:g} events/s "
              f"(S3 flush {args.flush:g} s)")
        simulator = subprocess.Popen([sys.executable, "-m", "kafkatrail.cli", "simulate", "--rate", str(args.rate),
                                      "--duration", str(args.seconds), "--seed", "7"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        began = time.monotonic()
        start_cpu = {role: cpu_seconds(pid) for role, pid in pids.items()}
        window: dict[str, deque[tuple[float, float]]] = {role: deque(maxlen=6) for role in pids}
        busiest = dict.fromkeys(pids, 0.0)
        while simulator.poll() is None:
            time.sleep(1)
            now = time.monotonic()
            for role, pid in pids.items():
                window[role].append((now, cpu_seconds(pid)))
                (t0, c0), (t1, c1) = window[role][0], window[role][-1]
                if t1 - t0 >= 4.5:
                    busiest[role] = max(busiest[role], (c1 - c0) / (t1 - t0))
        elapsed = time.monotonic() - began
        print(simulator.stdout.read().decode().strip() if simulator.stdout else "")
        processed = totals(scrape(f"http://127.0.0.1:{settings.processors.metrics_port}/metrics") or {}).get(
            "kafkatrail_processor_events_in_total", 0)
        achieved = processed / elapsed
        scale = args.rate / achieved if achieved else 0.0
        print(f"processors took in {processed:,.0f} events in {elapsed:.0f} s ({achieved:,.0f}/s)\n")
        print(f"{'role':20} {'peak RSS MiB':>12} {'mean CPU':>9} {'busiest 5 s':>12} {f'at {args.rate:g}/s':>11}")
        for role, pid in pids.items():
            mean = (cpu_seconds(pid) - start_cpu[role]) / elapsed
            print(f"{role:20} {peak_rss_mib(pid):12.0f} {mean:9.2f} {busiest[role]:12.2f} {mean * scale:11.2f}")
        print(f"(CPU in cores; the last column scales the mean to {args.rate:g} events/s when the machine delivered "
              "fewer)")
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(90)


if __name__ == "__main__":
    main()
