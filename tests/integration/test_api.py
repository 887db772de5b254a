"""`kafkatrail api` on the real broker with moto over HTTP: aws-cli v1 through every operation and error, a trail
created through the API receiving log files (and GetTrailStatus saying so), SigV4 refusals, hostile input, and
`kafkatrail trails apply` sharing the trails topic with the API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from kafkatrail.api.auth import Principal, write_credentials
from kafkatrail.core.settings import Settings, settings_environment
from kafkatrail.stack import Endpoints
from kafkatrail.stack.processes import free_port
from kafkatrail.trails.model import Trail
from kafkatrail.trails.topic import apply_trails, current_trails_and_origins
from tests.integration.pipeline import Workers, pipeline_settings, publish, simulate, stop_process
from tests.signed_client import TARGET_PREFIX, cloudtrail_client, exchange, signed_call

KEY, SECRET = "testing", "testing"  # the stack's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: aws-cli signs with them
OTHER_KEY, OTHER_SECRET = "OTHERKEY0001", "other-secret"
OTHER_ACCOUNT = "999988887777"
RECORDS = simulate(3_000, seed=7, duplicates=0.0)
ACCOUNT, REGION = Counter((r["recipientAccountId"], r["awsRegion"]) for r in RECORDS).most_common(1)[0][0]


class Api:
    """A `kafkatrail api` process on fresh topics, with a credentials file for aws-cli's key and another account."""

    def __init__(self, stack: Endpoints, tmp_path: Path, settings: Settings | None = None,
                 account: str = ACCOUNT) -> None:
        self.settings: Settings = settings or pipeline_settings(stack)
        self.aws_endpoint = stack.aws_endpoint_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp_path = tmp_path
        credentials = tmp_path / "credentials.toml"
        write_credentials(credentials, [Principal(KEY, account, secret_access_key=SECRET),
                                        Principal(OTHER_KEY, OTHER_ACCOUNT, secret_access_key=OTHER_SECRET)])
        self.env = {**os.environ, **settings_environment(self.settings), "AWS_ENDPOINT_URL": stack.aws_endpoint_url,
                    "KAFKATRAIL_API__PORT": str(self.port), "KAFKATRAIL_API__CREDENTIALS_FILE": str(credentials),
                    "KAFKATRAIL_KEYS__FOLDER": str(tmp_path / "keys")}
        self.log = tmp_path / "api.log"
        self.process = subprocess.Popen([sys.executable, "-m", "kafkatrail.cli", "api"], env=self.env,
                                        stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                status, _, _ = exchange(self.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout_s=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the API did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        stop_process(self.process)

    def client(self, region: str = REGION, key: str = KEY, secret: str = SECRET) -> Any:
        return cloudtrail_client(self.url, region, key, secret)

    def aws(self, aws_cli: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "AWS_ENDPOINT_URL_CLOUDTRAIL": self.url, "AWS_ACCESS_KEY_ID": KEY,
               "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION, "AWS_MAX_ATTEMPTS": "1"}
        env.pop("AWS_ENDPOINT_URL", None)
        return subprocess.run([str(aws_cli), "cloudtrail", *arguments, "--output", "json"], env=env,
                              capture_output=True, text=True, timeout=60)


@pytest.fixture
def api(stack: Endpoints, tmp_path: Path) -> Iterator[Api]:
    running = Api(stack, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def call(url: str, operation: str | None, body: bytes = b"{}", **signing: Any) -> tuple[int, dict[str, Any]]:
    """A call signed with aws-cli's key in REGION (or as `signing` says: key, secret, at, region)."""
    return signed_call(url, operation, body, **{"key": KEY, "secret": SECRET, "region": REGION, **signing})


def cli_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def cli_error(result: subprocess.CompletedProcess[str], code: str) -> None:
    assert result.returncode != 0, result.stdout
    assert f"An error occurred ({code})" in result.stderr, result.stderr


def test_aws_cli_drives_every_operation_and_gets_each_error(api: Api, aws_cli: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=api.aws_endpoint, region_name=REGION)
    sns = boto3.client("sns", endpoint_url=api.aws_endpoint, region_name=REGION)
    kms = boto3.client("kms", endpoint_url=api.aws_endpoint, region_name=REGION)
    logs = boto3.client("logs", endpoint_url=api.aws_endpoint, region_name=REGION)
    bucket = f"cli-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, **({} if REGION == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": REGION}}))
    topic = sns.create_topic(Name=f"cli-{uuid.uuid4().hex[:8]}")["TopicArn"]
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    group = f"cli-{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    group_arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/cloudtrail-logs"

    created = cli_json(api.aws(aws_cli, "create-trail", "--name", "cli-trail", "--s3-bucket-name", bucket,
                               "--sns-topic-name", topic, "--kms-key-id", key_arn.split("/")[-1],
                               "--cloud-watch-logs-log-group-arn", group_arn, "--cloud-watch-logs-role-arn", role_arn,
                               "--tags-list", "Key=team,Value=audit"))
    arn = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/cli-trail"
    assert created["TrailARN"] == arn and created["KmsKeyId"] == key_arn and created["SnsTopicARN"] == topic
    basic = cli_json(api.aws(aws_cli, "put-event-selectors", "--trail-name", "cli-trail", "--event-selectors",
                             '[{"ReadWriteType":"All","IncludeManagementEvents":true,"DataResources":'
                             f'[{{"Type":"AWS::S3::Object","Values":["arn:aws:s3:::{bucket}/"]}}]}}]'))
    assert basic["EventSelectors"][0]["DataResources"][0]["Type"] == "AWS::S3::Object"
    advanced = ('[{"Name":"management","FieldSelectors":[{"Field":"eventCategory","Equals":["Management"]}]}]')
    assert cli_json(api.aws(aws_cli, "put-event-selectors", "--trail-name", arn, "--advanced-event-selectors",
                            advanced))["AdvancedEventSelectors"] == json.loads(advanced)
    assert cli_json(api.aws(aws_cli, "get-event-selectors", "--trail-name", "cli-trail"))[
        "AdvancedEventSelectors"] == json.loads(advanced)
    insights = cli_json(api.aws(aws_cli, "put-insight-selectors", "--trail-name", "cli-trail",
                                "--insight-selectors", '[{"InsightType":"ApiCallRateInsight"}]'))
    assert insights["InsightSelectors"] == [{"InsightType": "ApiCallRateInsight"}]
    before_start = time.time()
    cli_json(api.aws(aws_cli, "start-logging", "--name", "cli-trail"))
    status = cli_json(api.aws(aws_cli, "get-trail-status", "--name", "cli-trail"))
    assert status["IsLogging"] is True
    started = status["StartLoggingTime"]  # aws-cli v1 prints timestamps as it received them (epoch seconds)
    assert (started if isinstance(started, int | float) else datetime.fromisoformat(started).timestamp()) >= \
        before_start - 1
    described = cli_json(api.aws(aws_cli, "describe-trails"))["trailList"]
    assert [t["TrailARN"] for t in described] == [arn] and described[0]["HasInsightSelectors"] is True
    assert cli_json(api.aws(aws_cli, "get-trail", "--name", arn))["Trail"]["HomeRegion"] == REGION
    assert [t["TrailARN"] for t in cli_json(api.aws(aws_cli, "list-trails"))["Trails"]] == [arn]
    cli_json(api.aws(aws_cli, "add-tags", "--resource-id", arn, "--tags-list", "Key=env,Value=test"))
    tags = cli_json(api.aws(aws_cli, "list-tags", "--resource-id-list", arn))["ResourceTagList"][0]["TagsList"]
    assert sorted(t["Key"] for t in tags) == ["env", "team"]
    cli_json(api.aws(aws_cli, "stop-logging", "--name", "cli-trail"))
    stopped = cli_json(api.aws(aws_cli, "get-trail-status", "--name", "cli-trail"))
    assert stopped["IsLogging"] is False and "StopLoggingTime" in stopped
    updated = cli_json(api.aws(aws_cli, "update-trail", "--name", "cli-trail", "--s3-key-prefix", "moved",
                               "--enable-log-file-validation"))
    assert updated["S3KeyPrefix"] == "moved" and updated["LogFileValidationEnabled"] is True

    errors = [
        (["create-trail", "--name", "bad--name", "--s3-bucket-name", bucket], "InvalidTrailNameException"),
        (["create-trail", "--name", "cli-trail", "--s3-bucket-name", bucket], "TrailAlreadyExistsException"),
        (["create-trail", "--name", "nobucket", "--s3-bucket-name", f"missing-{uuid.uuid4().hex[:8]}"],
         "S3BucketDoesNotExistException"),
        (["create-trail", "--name", "nosns", "--s3-bucket-name", bucket, "--sns-topic-name", "no-such-topic"],
         "InsufficientSnsTopicPolicyException"),
        (["create-trail", "--name", "nokey", "--s3-bucket-name", bucket, "--kms-key-id", str(uuid.uuid4())],
         "KmsKeyNotFoundException"),
        (["create-trail", "--name", "badgroup", "--s3-bucket-name", bucket, "--cloud-watch-logs-log-group-arn",
          "arn:aws:logs:broken", "--cloud-watch-logs-role-arn", role_arn], "InvalidCloudWatchLogsLogGroupArnException"),
        (["create-trail", "--name", "nogroup", "--s3-bucket-name", bucket, "--cloud-watch-logs-log-group-arn",
          f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:absent:*", "--cloud-watch-logs-role-arn", role_arn],
         "InvalidCloudWatchLogsLogGroupArnException"),
        (["put-event-selectors", "--trail-name", "cli-trail", "--event-selectors",
          json.dumps([{"ReadWriteType": "All"}] * 6)], "InvalidEventSelectorsException"),
        (["put-event-selectors", "--trail-name", "cli-trail", "--event-selectors", '[{"ReadWriteType":"All"}]',
          "--advanced-event-selectors", advanced], "InvalidEventSelectorsException"),
        (["put-event-selectors", "--trail-name", "cli-trail", "--advanced-event-selectors",
          '[{"FieldSelectors":[{"Field":"eventCategory","Equals":["Management"]},{"Field":"colour","Equals":["x"]}]}]'],
         "InvalidEventSelectorsException"),
        (["put-event-selectors", "--trail-name", "cli-trail", "--advanced-event-selectors", json.dumps([
            {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]},
                                {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                                {"Field": "resources.ARN", "StartsWith": [f"arn:aws:s3:::b{i}/" for i in range(501)]}]}
        ])], "InvalidEventSelectorsException"),
        (["get-trail", "--name", "absent"], "TrailNotFoundException"),
        (["add-tags", "--resource-id", arn, "--tags-list", *[f"Key=k{i},Value=v" for i in range(49)]],
         "TagsLimitExceededException"),
        (["add-tags", "--resource-id", arn, "--tags-list", "Key=aws:reserved,Value=v"],
         "InvalidTagParameterException"),
    ]
    errors.append((["put-event-selectors", "--trail-name", "cli-trail", "--event-selectors",
                    '[{"ReadWriteType":"Sometimes"}]'], "InvalidEventSelectorsException"))
    before = cli_json(api.aws(aws_cli, "describe-trails"))
    for arguments, code in errors:
        cli_error(api.aws(aws_cli, *arguments), code)
    assert cli_json(api.aws(aws_cli, "describe-trails")) == before, "a refused call changed nothing"
    for name in ("fill-1", "fill-2", "fill-3", "fill-4"):  # with cli-trail: five in the region
        cli_json(api.aws(aws_cli, "create-trail", "--name", name, "--s3-bucket-name", bucket))
    cli_error(api.aws(aws_cli, "create-trail", "--name", "sixth", "--s3-bucket-name", bucket),
              "MaximumNumberOfTrailsExceededException")
    assert api.client().get_trail(Name="cli-trail")["Trail"]["S3KeyPrefix"] == "moved"
    for name in ("cli-trail", "fill-1", "fill-2", "fill-3", "fill-4"):
        cli_json(api.aws(aws_cli, "delete-trail", "--name", name))
    assert cli_json(api.aws(aws_cli, "describe-trails"))["trailList"] == []


def test_a_trail_created_through_the_api_receives_log_files(api: Api, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=api.aws_endpoint, region_name="us-east-1")
    bucket = f"api-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    ct = api.client()
    ct.create_trail(Name="delivered", S3BucketName=bucket, S3KeyPrefix="api")
    ct.start_logging(Name="delivered")
    workers = Workers(api.settings, tmp_path, env={"AWS_ENDPOINT_URL": api.aws_endpoint})
    try:
        for role in ("processors", "s3"):
            workers.start(role)
        produced_at = time.time()
        publish(api.settings, [r for r in RECORDS if (r["recipientAccountId"], r["awsRegion"]) == (ACCOUNT, REGION)])
        deadline = time.monotonic() + 90
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            workers.assert_alive()
            status = ct.get_trail_status(Name="delivered")
            if "LatestDeliveryTime" in status:
                break
            time.sleep(1)
        assert "LatestDeliveryTime" in status, f"{status}\n{workers.log_tail()}"
        assert status["LatestDeliveryTime"].timestamp() >= produced_at
        assert status["IsLogging"] is True and "LatestDeliveryError" not in status
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="api/").get("Contents", [])]
        assert keys and all(f"/AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/" in f"/{key}" for key in keys)
    finally:
        workers.stop_all()


def test_sigv4_refusals(api: Api) -> None:
    api.client().create_trail(Name="mine", S3BucketName=ensure_bucket(api))
    arn = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/mine"
    body = json.dumps({"Name": arn}).encode()
    status, _, answer = exchange(api.url, (
        f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {TARGET_PREFIX}GetTrail\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body)
    assert (status, json.loads(answer)["__type"]) == (403, "MissingAuthenticationTokenException")
    cases = [
        ({"secret": "wrong-secret"}, "InvalidSignatureException"),
        ({"key": "UNKNOWNKEY01"}, "UnrecognizedClientException"),
        ({"at": time.time() - 600}, "InvalidSignatureException"),
        ({"key": OTHER_KEY, "secret": OTHER_SECRET}, "TrailNotFoundException"),
    ]
    for signing, code in cases:
        status, answer = call(api.url, "GetTrail", body, **signing)
        assert answer["__type"] == code, (signing, answer)
        assert SECRET not in answer["Message"] and "wrong-secret" not in answer["Message"]
    assert "Signature expired" in call(api.url, "GetTrail", body, at=time.time() - 600)[1]["Message"]
    assert call(api.url, "GetTrail", body)[1]["Trail"]["TrailARN"] == arn
    log = api.log.read_text()
    assert OTHER_SECRET not in log and "wrong-secret" not in log and "Signature=" not in log
    assert '"access_key_id":"testing"' in log and '"operation":"GetTrail"' in log


def ensure_bucket(api: Api) -> str:
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=api.aws_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    return bucket


def test_bad_input_and_idle_connections(api: Api) -> None:
    assert call(api.url, "DescribeTrails", b"{not json")[1]["__type"] == "SerializationException"
    assert call(api.url, "LaunchRockets")[1]["__type"] == "UnknownOperationException"
    assert call(api.url, None)[1]["__type"] == "UnknownOperationException"
    big = b'{"trailNameList": ["' + b"a" * (2 << 20) + b'"]}'
    status, answer = call(api.url, "DescribeTrails", big)
    assert (status, answer["__type"]) == (413, "RequestEntityTooLarge")
    host, port = api.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(20)]
    try:
        for index, connection in enumerate(idle):
            if index % 2:
                connection.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # half a request, never finished
        began = time.monotonic()
        assert api.client().describe_trails()["trailList"] == []
        assert time.monotonic() - began < 2
    finally:
        for connection in idle:
            connection.close()
    assert api.process.poll() is None


def test_trails_apply_and_the_api_share_the_topic(api: Api, tmp_path: Path) -> None:
    bucket = ensure_bucket(api)
    ct = api.client()
    ct.create_trail(Name="from-api", S3BucketName=bucket)
    from_file = Trail(name="from-file", home_region=REGION, account_id=ACCOUNT, s3_bucket_name=bucket)
    also_file = Trail(name="also-file", home_region=REGION, account_id=ACCOUNT, s3_bucket_name=bucket)
    assert apply_trails(api.settings, [from_file, also_file]) == {from_file.arn: "created", also_file.arn: "created"}
    assert apply_trails(api.settings, [from_file]) == {from_file.arn: "unchanged"}  # deletes nothing
    names = sorted(t["Name"] for t in ct.list_trails()["Trails"])
    assert names == ["also-file", "from-api", "from-file"]
    assert apply_trails(api.settings, [from_file], prune=True) == {from_file.arn: "unchanged",
                                                                  also_file.arn: "deleted"}
    trails, origins = current_trails_and_origins(api.settings)
    assert origins == {from_file.arn: "file", f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/from-api": "api"}
    listed = subprocess.run([sys.executable, "-m", "kafkatrail.cli", "trails", "list"], env=api.env,
                            capture_output=True, text=True, timeout=60, check=True).stdout
    deadline = time.monotonic() + 10
    while sorted(t["TrailARN"] for t in ct.list_trails()["Trails"]) != sorted(trails):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert sorted(line.split(": ")[0] for line in listed.splitlines()) == sorted(trails)
    assert ct.get_trail(Name="from-file")["Trail"]["Name"] == "from-file"
