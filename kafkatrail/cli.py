"""`kafkatrail`: one command for the local stack, topics and (in later roles) every worker."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException

from kafkatrail import __version__
from kafkatrail.core.failures import KAFKA_AUTH_CODES, Unreachable, check_kafka, kafka_failure, timeout_failure
from kafkatrail.core.settings import Settings, SettingsError, TransactionalWorkerSettings, load_settings
from kafkatrail.producers.event_producer import DeliveryError, EventProducer, InvalidEventError
from kafkatrail.stack import LocalStack, StackError
from kafkatrail.trails.errors import TrailError


def _stack_overrides(args: argparse.Namespace) -> dict[str, Any]:
    fields = ("data_dir", "cache_dir", "kafka_port", "aws_port")
    overrides = {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}
    if getattr(args, "sasl", False):
        overrides["sasl"] = True
    return overrides


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if stack := _stack_overrides(args):
        overrides["stack"] = stack
    if getattr(args, "partitions", None) is not None:
        overrides["topic_partitions"] = args.partitions
    if getattr(args, "timeout", None) is not None:
        overrides["aws"] = {"connect_timeout_s": args.timeout, "read_timeout_s": args.timeout}
    return load_settings(args.config, **overrides)


Command = Callable[[argparse.Namespace], int]
DEFAULT_TIMEOUT_S = 15.0


def reaching_kafka(when: Callable[[argparse.Namespace], bool] = lambda args: True) -> Callable[[Command], Command]:
    """A command that needs the broker (`when` its arguments say so) first checks that it answers within
    --timeout, so an unreachable broker is one line before any work starts."""
    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def checked(args: argparse.Namespace) -> int:
            if when(args):
                check_kafka(_settings(args), args.timeout)
            return command(args)
        return checked
    return decorate


def cmd_stack_up(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # In SASL mode every producer principal of `processors.sources` gets its credential and may write its topic.
    producers = {source.name: settings.topics.source(source.name) for source in settings.processors.sources}
    stack = LocalStack(settings.stack, producers=producers)
    print(stack.up().shell_exports())
    return 0


def cmd_stack_down(args: argparse.Namespace) -> int:
    stopped = LocalStack(_settings(args).stack).down()
    print("\n".join(stopped) if stopped else "local stack was not running", file=sys.stderr)
    return 0


def cmd_stack_status(args: argparse.Namespace) -> int:
    lines = LocalStack(_settings(args).stack).status(args.timeout)
    for name, line in lines.items():
        print(f"{name}: {line}")
    return 0 if all(line.startswith("running") for line in lines.values()) else 3


def cmd_stack_fetch(args: argparse.Namespace) -> int:
    print(LocalStack(_settings(args).stack).fetch())
    return 0


@reaching_kafka()
def cmd_topics_create(args: argparse.Namespace) -> int:
    from kafkatrail.core.topics import create_topics

    for name, outcome in create_topics(_settings(args)).items():
        print(f"{name}: {outcome}")
    return 0


@reaching_kafka()
def cmd_produce(args: argparse.Namespace) -> int:
    from kafkatrail.producers.replay import replay

    with EventProducer(_settings(args), topic=args.topic) as producer:
        summary = replay(args.paths, producer, rate=args.rate, progress=not args.quiet)
    print("\n".join(summary.lines()))
    return 0 if summary.rejected == 0 and not summary.unreadable_files else 1


def _traffic_model(args: argparse.Namespace) -> Any:
    from kafkatrail.producers.simulator import Burst, TrafficModel

    fields: dict[str, Any] = {"rate": args.rate, "seed": args.seed, "accounts": args.accounts,
                              "duplicate_rate": args.duplicates, "regions": tuple(args.regions.split(","))}
    try:
        fields["bursts"] = tuple(Burst.parse(text) for text in args.burst)
        if args.start:
            fields["start"] = datetime.fromisoformat(args.start.replace("Z", "+00:00")).astimezone(UTC)
        return TrafficModel(**fields)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


@reaching_kafka(when=lambda args: not args.output_dir)
def cmd_simulate(args: argparse.Namespace) -> int:
    from kafkatrail.producers.simulate import simulate_to_files, simulate_to_kafka
    from kafkatrail.producers.simulator import Limit, TrafficSimulator

    simulator = TrafficSimulator(_traffic_model(args))
    limit = Limit(args.count, args.duration)
    if args.output_dir:
        files = simulate_to_files(simulator, args.output_dir, limit)
        print(f"wrote {simulator.generated} records (+{simulator.duplicates} duplicates) "
              f"in {len(files)} log files under {args.output_dir}")
        return 0
    settings = _settings(args)
    with EventProducer(settings, topic=args.topic) as producer:
        emitted = simulate_to_kafka(simulator, producer, limit, paced=not args.fast_forward)
    print(f"published {emitted} records to {producer.topic} "
          f"({simulator.duplicates} of them repeated eventIDs)")
    return 0


@reaching_kafka()
def cmd_trails_apply(args: argparse.Namespace) -> int:
    from kafkatrail.trails.definitions import load_trails
    from kafkatrail.trails.topic import apply_trails

    for arn, outcome in sorted(apply_trails(_settings(args), load_trails(args.file), prune=args.prune).items()):
        print(f"{arn}: {outcome}")
    return 0


@reaching_kafka()
def cmd_trails_list(args: argparse.Namespace) -> int:
    from kafkatrail.trails.topic import current_trails_and_origins

    trails, origins = current_trails_and_origins(_settings(args))
    for arn, trail in sorted(trails.items()):
        print(f"{arn}: {'logging' if trail.logging else 'stopped'} (created by {origins.get(arn, 'file')})")
    return 0


def _stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask a long-running service to finish what it is doing and return."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop())


class WorkerRole(NamedTuple):
    """Where a `kafkatrail worker` role's class lives, and the settings section (group, /metrics port) it reads."""

    module: str
    cls: str
    section: str


# An Insights sink is its sink on the Insights topic, with a section of its own for its group and port.
WORKER_ROLES = {
    "processors": WorkerRole("kafkatrail.processors.worker", "ProcessorWorker", "processors"),
    "s3": WorkerRole("kafkatrail.sinks.s3", "S3Sink", "s3"),
    "cloudwatch": WorkerRole("kafkatrail.sinks.cloudwatch", "CloudWatchSink", "cloudwatch"),
    "digests": WorkerRole("kafkatrail.sinks.digests", "DigestWorker", "digests"),
    "insights": WorkerRole("kafkatrail.processors.insights_worker", "InsightsWorker", "insights"),
    "s3-insights": WorkerRole("kafkatrail.sinks.s3", "S3InsightSink", "s3_insights"),
    "cloudwatch-insights": WorkerRole("kafkatrail.sinks.cloudwatch", "CloudWatchInsightSink", "cloudwatch_insights"),
    "history": WorkerRole("kafkatrail.sinks.history", "HistoryWorker", "history"),
}


def cmd_worker(args: argparse.Namespace) -> int:
    import importlib

    from kafkatrail.core.logs import configure_json_logging
    from kafkatrail.core.metrics import serve_endpoints
    from kafkatrail.runtime.supervisor import Supervisor

    role = WORKER_ROLES[args.role]
    section: dict[str, Any] = {}
    if args.instance_id:
        section_type = Settings.model_fields[role.section].annotation
        if not (isinstance(section_type, type) and issubclass(section_type, TransactionalWorkerSettings)):
            raise SettingsError("--instance-id: only processors and insights have one (their transactional id)")
        section["instance_id"] = args.instance_id
    if args.metrics_port is not None:
        section["metrics_port"] = args.metrics_port
    settings = load_settings(args.config, **({role.section: section} if section else {}))
    role_settings = getattr(settings, role.section)
    configure_json_logging()
    worker_class = getattr(importlib.import_module(role.module), role.cls)
    supervisor = Supervisor(lambda metrics, health: worker_class(settings, metrics, health))
    try:
        server = serve_endpoints(role_settings.metrics_host, role_settings.metrics_port, supervisor.health)
    except OSError as exc:
        print(f"kafkatrail: error: {exc}", file=sys.stderr)
        return 1
    _stop_on_signals(supervisor.stop)
    try:
        supervisor.run()
    finally:
        if server is not None:
            server.shutdown()
    return 0


def _node_roles(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The roles `kafkatrail run` starts: --roles (names, or comma-separated lists of them), else the defaults."""
    from kafkatrail.node import NODE_ROLES, default_roles

    if not args.roles:
        roles, left_out = default_roles(settings)
        if left_out:
            print(f"kafkatrail run: {left_out}", file=sys.stderr)
        return roles
    roles = list(dict.fromkeys(name for text in args.roles for name in text.split(",") if name))
    unknown = [name for name in roles if name not in NODE_ROLES]
    if unknown or not roles:
        raise SettingsError(f"--roles: {unknown[0] if unknown else 'none'!r} is not a role (roles: "
                            f"{', '.join(NODE_ROLES)})")
    return roles


@reaching_kafka()
def cmd_run(args: argparse.Namespace) -> int:
    from kafkatrail.core.logs import configure_json_logging
    from kafkatrail.node import Node, node_environment, role_port

    settings = _settings(args)
    roles = _node_roles(args, settings)
    ports = {role: role_port(settings, role) for role in roles}
    taken = [role for role in roles if list(ports.values()).count(ports[role]) > 1 and ports[role]]
    if taken:
        raise SettingsError(f"roles {', '.join(taken)} are set to serve on the same port {ports[taken[0]]} "
                            "(metrics_port of their sections, api.port)")
    configure_json_logging()
    node = Node(roles, ports, node_environment(args.config), log_dir=args.log_dir)
    _stop_on_signals(node.stop)
    node.run()
    return 0


@reaching_kafka()
def cmd_status(args: argparse.Namespace) -> int:
    import time as clock

    from kafkatrail.node_status import status_lines

    for line in status_lines(_settings(args), clock.time(), args.timeout):
        print(line)
    return 0


def cmd_insights_evaluate(args: argparse.Namespace) -> int:
    from kafkatrail.processors.insights import InsightsConfig
    from kafkatrail.processors.insights_evaluation import FULL, evaluate

    config = InsightsConfig.from_settings(_settings(args).insights)
    scale = FULL if args.full else {}
    try:
        lines, passed = evaluate(
            seeds=list(range(args.seed, args.seed + scale.get("seeds", args.seeds))),
            regions=scale.get("regions", args.regions), baseline_days=args.warmup_days,
            quiet_days=args.quiet_days, days=scale.get("days", args.days), bursts=scale.get("bursts", args.bursts),
            storms=scale.get("storms", args.storms), config=config)
    except ValueError as exc:
        raise SettingsError(f"insights evaluate: {exc}") from None
    print("\n".join(lines))
    return 0 if passed else 1


def cmd_history_lookup(args: argparse.Namespace) -> int:
    import time as clock

    import orjson

    from kafkatrail.api.errors import ApiError
    from kafkatrail.api.lookup_events import event_of, lookup_of
    from kafkatrail.sinks.history_store import HistoryStore
    from kafkatrail.validate_logs import ValidationError, parse_when

    settings = _settings(args)
    if args.max < 1:
        raise SettingsError(f"--max: must be at least 1 (got {args.max})")
    body: dict[str, Any] = {"MaxResults": min(args.max, 50)}
    if args.attribute:
        key, equals, value = args.attribute.partition("=")
        if not equals:
            raise SettingsError(f"--attribute: must be KEY=VALUE (got {args.attribute!r})")
        body["LookupAttributes"] = [{"AttributeKey": key, "AttributeValue": value}]
    if args.category:
        body["EventCategory"] = args.category
    try:
        for option, member in (("start", "StartTime"), ("end", "EndTime")):
            if getattr(args, option):
                body[member] = parse_when(getattr(args, option), f"--{option}").timestamp()
        region = args.region or settings.aws.region or "us-east-1"
        query = lookup_of(body, args.account, region, int(clock.time() * 1000), settings.history.retention_days, b"")
    except ApiError as exc:
        print(f"kafkatrail: error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"kafkatrail: error: {exc}", file=sys.stderr)
        return 2
    if not settings.history.store_path.exists():
        print(f"kafkatrail: error: no event history at {settings.history.store_path} (history.store_path): run "
              "`kafkatrail worker history`", file=sys.stderr)
        return 1
    store = HistoryStore(settings.history.store_path, readonly=True)
    events: list[dict[str, Any]] = []
    try:
        while len(events) < args.max:
            page, after = store.lookup(query)
            events.extend(event_of(stored) for stored in page[:args.max - len(events)])
            if after is None:
                break
            query = dataclasses.replace(query, after=after)
    finally:
        store.close()
    if args.output == "json":
        print(orjson.dumps({"Events": events}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{'EventTime (UTC)':20}  {'EventName':32}  {'Username':24}  {'EventSource':28}  EventId")
    for event in events:
        when = datetime.fromtimestamp(event["EventTime"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{when:20}  {event['EventName'][:32]:32}  {str(event.get('Username', '-'))[:24]:24}  "
              f"{event['EventSource'][:28]:28}  {event['EventId']}")
    print(f"{len(events)} event(s)", file=sys.stderr)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from kafkatrail.api.auth import CredentialsFileError
    from kafkatrail.api.server import ApiService
    from kafkatrail.core.logs import configure_json_logging

    section = {name: getattr(args, name) for name in ("host", "port") if getattr(args, name) is not None}
    settings = load_settings(args.config, **({"api": section} if section else {}))
    configure_json_logging()
    try:
        service = ApiService(settings)
    except (CredentialsFileError, ValueError) as exc:
        print(f"kafkatrail: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"kafkatrail: error: cannot listen on {settings.api.host}:{settings.api.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    _stop_on_signals(service.stop)
    print(f"CloudTrail API on {service.url}", file=sys.stderr, flush=True)
    service.run()
    return 0


def cmd_validate_logs(args: argparse.Namespace) -> int:
    from kafkatrail.core import aws
    from kafkatrail.validate_logs import ValidationError, parse_when, run_validation, trail_of_arn

    try:
        start = parse_when(args.start_time, "--start-time")
        end = parse_when(args.end_time, "--end-time") if args.end_time else datetime.now(UTC)
        home = trail_of_arn(args.trail_arn)[1] if args.trail_arn else None
        settings = _settings(args)
        cloudtrail = aws.client(settings, "cloudtrail", args.region or home or None)
        return run_validation(cloudtrail, aws.client(settings, "s3"), args.trail_arn, args.s3_bucket, args.s3_prefix,
                              start, end, args.region, args.verbose)
    except ValidationError as exc:
        print(f"kafkatrail: error: {exc}", file=sys.stderr)
        return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from kafkatrail.demo import run_demo

    if args.seconds <= 0:
        raise SettingsError(f"--seconds: must be more than 0 (got {args.seconds:g})")
    return run_demo(_settings(args), args.seconds)


def _waits(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give a command that waits for Kafka or AWS its --timeout."""
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"give up when Kafka or AWS has not answered within this (default {DEFAULT_TIMEOUT_S:g})")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kafkatrail", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kafkatrail {__version__}")
    parser.add_argument("--config", type=Path, help="TOML settings file (default: $KAFKATRAIL_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="the embedded local stack: Kafka broker + AWS stand-in")
    stack_commands = stack.add_subparsers(dest="stack_command", required=True)
    for name, func, help_text in (
        ("up", cmd_stack_up, "start the broker and the AWS stand-in; prints export lines to eval"),
        ("down", cmd_stack_down, "stop them"),
        ("status", cmd_stack_status, "show what runs and answers (exit 3 if anything is stopped or silent)"),
        ("fetch", cmd_stack_fetch, "resolve Kafka's jars into the cache without starting anything"),
    ):
        sub = stack_commands.add_parser(name, help=help_text)
        sub.add_argument("--data-dir", type=Path, help="state, storage and logs (default .cache/stack)")
        sub.set_defaults(func=func)
        if name == "status":
            _waits(sub)
        if name in ("up", "fetch"):
            sub.add_argument("--cache-dir", type=Path, help="where Kafka's jars are cached (default .cache/kafka)")
        if name == "up":
            sub.add_argument("--kafka-port", type=int, help="broker port on 127.0.0.1 (default 9092)")
            sub.add_argument("--aws-port", type=int, help="AWS stand-in port on 127.0.0.1 (default 5000)")
            sub.add_argument("--sasl", action="store_true",
                             help="SASL/SCRAM-SHA-512 and ACLs on the broker (stack.sasl); a data dir keeps its mode")

    topics = commands.add_parser("topics", help="Kafka topics")
    topics_commands = topics.add_subparsers(dest="topics_command", required=True)
    create = topics_commands.add_parser("create", help="create the default topics (idempotent)")
    create.add_argument("--partitions", type=int, help="partitions per topic (default 6)")
    _waits(create).set_defaults(func=cmd_topics_create)

    produce = commands.add_parser("produce", help="replay CloudTrail log files (.json, .json.gz, folders) into Kafka")
    produce.add_argument("paths", nargs="+", type=Path, help="files or folders (S3 layout) to replay")
    produce.add_argument("--rate", type=float, help="records per second (default: as fast as possible)")
    produce.add_argument("--quiet", action="store_true", help="no progress bar")
    produce.add_argument("--topic", help="events topic to write (default: the events topic; a producer principal's "
                                         "own: <topic_prefix>.events.<name>)")
    _waits(produce).set_defaults(func=cmd_produce)

    simulate = commands.add_parser("simulate", help="realistic CloudTrail traffic into Kafka or log files")
    simulate.add_argument("--rate", type=float, default=100.0, help="mean records per second of event time")
    simulate.add_argument("--duration", type=float, help="seconds of event time to simulate")
    simulate.add_argument("--count", type=int, help="records to emit (duplicates included)")
    simulate.add_argument("--seed", type=int, default=0, help="same seed + --start = same records")
    simulate.add_argument("--start", help="event time of the first second, ISO 8601 (default: now)")
    simulate.add_argument("--accounts", type=int, default=3)
    simulate.add_argument("--regions", default="us-east-1,eu-west-1,ap-southeast-2")
    simulate.add_argument("--duplicates", type=float, default=0.0, help="share of records sent twice, e.g. 0.05")
    simulate.add_argument("--burst", action="append", default=[], metavar="SOURCE:NAME:FACTOR:START:DURATION",
                          help="multiply one API's rate, e.g. ec2.amazonaws.com:RunInstances:10:60:300")
    simulate.add_argument("--fast-forward", action="store_true", help="do not pace to wall-clock time")
    simulate.add_argument("--output-dir", type=Path, help="write CloudTrail log files here instead of Kafka")
    simulate.add_argument("--topic", help="events topic to write (default: the events topic)")
    _waits(simulate).set_defaults(func=cmd_simulate)

    trails = commands.add_parser("trails", help="trail definitions on the compacted trails topic")
    trails_commands = trails.add_subparsers(dest="trails_command", required=True)
    apply = trails_commands.add_parser("apply", help="create or update the trails of FILE (JSON or YAML); delete "
                                                     "nothing unless --prune")
    apply.add_argument("file", type=Path)
    apply.add_argument("--prune", action="store_true", help="also delete trails an earlier `trails apply` created "
                                                             "that FILE no longer holds (never those the API created)")
    _waits(apply).set_defaults(func=cmd_trails_apply)
    _waits(trails_commands.add_parser("list", help="the trails on the topic")).set_defaults(func=cmd_trails_list)

    worker = commands.add_parser("worker", help="run a pipeline role until SIGTERM")
    worker.add_argument("role", choices=sorted(WORKER_ROLES), help="processors: validate, dedupe, select per "
                        "trail; s3: log files and SNS notifications; cloudwatch: CloudWatch Logs; digests: signed "
                        "digest files; insights: CloudTrail Insights records; s3-insights, cloudwatch-insights: "
                        "Insights records to S3 and CloudWatch Logs; history: the event-history store")
    worker.add_argument("--instance-id", help="processors, insights: stable id of this process in its group "
                                              "(default: the host name)")
    worker.add_argument("--metrics-port", type=int, help="port of /metrics (0: off; defaults 9464, 9465, 9466, "
                                                         "9467, 9468, 9469, 9470, 9471)")
    worker.set_defaults(func=cmd_worker)

    run_node = commands.add_parser("run", help="run every role of this node (or --roles) as supervised child "
                                               "processes until SIGTERM; a role that ends is restarted")
    run_node.add_argument("--roles", nargs="+", metavar="ROLE", help="roles to run, by name or comma-separated: "
                          "processors, insights, s3, cloudwatch, digests, s3-insights, cloudwatch-insights, "
                          "history, api (default: all; api once api.credentials_file or api.allow_anonymous is set)")
    run_node.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                          help="TOML settings file, also given to every role (default: $KAFKATRAIL_CONFIG)")
    run_node.add_argument("--log-dir", type=Path, help="one <role>.log per role here (default: every role's JSON "
                                                       "lines on this command's stderr)")
    _waits(run_node).set_defaults(func=cmd_run)

    status = commands.add_parser("status", help="each role's consumer lag, the last log file per trail and the last "
                                                "digest per chain, as tables")
    _waits(status).set_defaults(func=cmd_status)

    insights = commands.add_parser("insights", help="CloudTrail Insights")
    insights_commands = insights.add_subparsers(dest="insights_command", required=True)
    evaluate = insights_commands.add_parser("evaluate", help="score the detector on labelled synthetic traffic "
                                                             "(bursts, error storms) against its targets")
    evaluate.add_argument("--warmup-days", type=int, default=7, help="days of history before the quiet days")
    evaluate.add_argument("--quiet-days", type=int, default=3, help="days without injections: every Insight is false")
    evaluate.add_argument("--days", type=int, default=1, help="days with injections")
    evaluate.add_argument("--bursts", type=int, default=8, help="call-rate bursts injected per seed")
    evaluate.add_argument("--storms", type=int, default=8, help="error storms injected per seed")
    evaluate.add_argument("--regions", type=int, default=1, help="regions of 10 APIs each (1-3)")
    evaluate.add_argument("--seed", type=int, default=1, help="first seed")
    evaluate.add_argument("--seeds", type=int, default=1, help="seeds run, from --seed on")
    evaluate.add_argument("--full", action="store_true", help="the README's evaluation: 5 seeds, 3 regions, 2 "
                                                               "injection days with 30 bursts and 30 storms each")
    evaluate.set_defaults(func=cmd_insights_evaluate)

    api = commands.add_parser("api", help="serve the CloudTrail API (SigV4; trails, selectors, status, tags, keys, "
                                          "LookupEvents)")
    api.add_argument("--host", help="bind address (default 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (default 8470; 0: any free port)")
    api.set_defaults(func=cmd_api)

    history = commands.add_parser("history", help="event history: the last 90 days of management events")
    history_commands = history.add_subparsers(dest="history_command", required=True)
    lookup = history_commands.add_parser("lookup", help="look events up in the store (as LookupEvents does), newest "
                                                        "first")
    lookup.add_argument("--account", required=True, help="the 12-digit account whose events to show")
    lookup.add_argument("--region", help="the region (default: aws.region, else us-east-1)")
    lookup.add_argument("--attribute", metavar="KEY=VALUE", help="one of EventId, EventName, ReadOnly, Username, "
                        "ResourceType, ResourceName, EventSource, AccessKeyId; exact match")
    lookup.add_argument("--start", help="ISO 8601 (default: the oldest event kept)")
    lookup.add_argument("--end", help="ISO 8601 (default: now)")
    lookup.add_argument("--category", choices=["insight"], help="Insights events instead of management events")
    lookup.add_argument("--max", type=int, default=50, help="events to show at most (default 50)")
    lookup.add_argument("--output", choices=["table", "json"], default="table")
    lookup.set_defaults(func=cmd_history_lookup)

    validate = commands.add_parser("validate-logs", help="check digest files and log files as AWS's validator does")
    target = validate.add_mutually_exclusive_group(required=True)
    target.add_argument("--trail-arn", help="the trail (bucket and prefix from DescribeTrails)")
    target.add_argument("--s3-bucket", help="every digest chain in this bucket (under --s3-prefix)")
    validate.add_argument("--s3-prefix", help="with --s3-bucket: the trails' S3KeyPrefix")
    validate.add_argument("--start-time", required=True, help="ISO 8601, e.g. 2024-05-01T00:00:00Z")
    validate.add_argument("--end-time", help="ISO 8601 (default: now)")
    validate.add_argument("--region", help="one source region only (default: every region with digests)")
    validate.add_argument("--verbose", action="store_true", help="print valid files too")
    _waits(validate).set_defaults(func=cmd_validate_logs)

    demo = commands.add_parser("demo", help="run the pipeline on a throwaway local stack and show what happened")
    demo.add_argument("--seconds", type=float, default=60.0, help="seconds of simulated traffic (default 60)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kafkatrail` console script."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "timeout"):  # a command that waits ends with its own line; librdkafka's would only repeat it
        logging.getLogger("kafkatrail.kafka").setLevel(logging.ERROR)
    return run(args.func, args)


def run(command: Command, args: argparse.Namespace) -> int:
    """Run `command`; a failure it cannot get past is one `kafkatrail: error:` line on stderr and an exit code:
    2 for settings that do not load and for Kafka or AWS out of reach or refusing, 1 for the rest."""
    from botocore.exceptions import BotoCoreError, ClientError

    from kafkatrail.core.failures import aws_failure

    try:
        return command(args)
    except (SettingsError, Unreachable) as exc:
        return _fail(exc, 2)
    except (BotoCoreError, ClientError) as exc:
        return _fail(aws_failure(_settings(args), exc), 2)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN) \
                or error.code() in KAFKA_AUTH_CODES:
            return _fail(kafka_failure(_settings(args), error), 2)
        return _fail(f"Kafka: {error.str()}", 1)
    except TimeoutError:
        return _fail(timeout_failure(_settings(args)), 2)
    except (StackError, InvalidEventError, DeliveryError, TrailError) as exc:
        return _fail(exc, 1)
    except KeyboardInterrupt:
        return 130


def _fail(problem: object, code: int) -> int:
    print(f"kafkatrail: error: {problem}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
