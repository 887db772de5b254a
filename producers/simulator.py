"""Realistic CloudTrail traffic for demos, tests and benchmarks.

The model, per second of simulated event time:
- the expected number of calls is `rate` times a diurnal factor (a sine over the UTC day, peak at 15:00,
  trough at 03:00, amplitude `diurnal_amplitude`) times 0.6 on Saturdays and Sundays; the actual count is
  Poisson-distributed around it;
- each call picks an API from CATALOG by weight (EC2, IAM, STS, S3 data events, Lambda, KMS, console
  sign-in), an account, a region (global services report us-east-1) and a caller of a plausible identity
  type (every CloudTrail userIdentity type appears); a per-API share of calls fails with a real error code;
- a burst multiplies one API's rate by `factor` for `duration` seconds starting `start` seconds in;
- with probability `duplicate_rate`, a recently emitted record is sent again unchanged (same eventID), as
  CloudTrail's at-least-once delivery does.

Everything is drawn from one `random.Random(seed)`: the same seed, start time and options give the same
records, byte for byte.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kafkatrail.trails.regions import partition_of

Record = dict[str, Any]
RequestBuilder = Callable[[random.Random, str, str], tuple[dict | None, dict | None, list | None]]

GLOBAL_REGION = "us-east-1"
WEEKEND_FACTOR = 0.6
RECENT_FOR_DUPLICATES = 1000
FEDERATED_SIGN_IN_SHARE = 0.01


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _instance(rng: random.Random) -> str:
    return f"i-{_hex(rng, 17)}"


def _run_instances(rng: random.Random, account: str, region: str) -> tuple[dict, dict, list]:
    instance_id, image = _instance(rng), f"ami-{_hex(rng, 17)}"
    request = {
        "instancesSet": {"items": [{"imageId": image, "minCount": 1, "maxCount": 1}]},
        "instanceType": rng.choice(["t3.micro", "m6i.large", "c7g.xlarge"]),
        "blockDeviceMapping": {}, "monitoring": {"enabled": False}, "disableApiTermination": False,
        "disableApiStop": False, "clientToken": str(uuid.UUID(int=rng.getrandbits(128))),
        "tagSpecificationSet": {"items": [{"resourceType": "instance",
                                           "tags": [{"key": "team", "value": rng.choice(["web", "data", "ml"])}]}]},
    }
    response = {
        "requestId": str(uuid.UUID(int=rng.getrandbits(128))), "reservationId": f"r-{_hex(rng, 17)}",
        "ownerId": account, "groupSet": {},
        "instancesSet": {"items": [{
            "instanceId": instance_id, "imageId": image, "currentInstanceBootMode": "uefi",
            "instanceState": {"code": 0, "name": "pending"}, "privateDnsName": f"ip-10-0-{rng.randrange(256)}-"
            f"{rng.randrange(256)}.{region}.compute.internal", "amiLaunchIndex": 0, "productCodes": {},
            "instanceType": request["instanceType"], "launchTime": 0, "placement": {
                "availabilityZone": f"{region}a", "tenancy": "default"},
            "monitoring": {"state": "disabled"}, "subnetId": f"subnet-{_hex(rng, 17)}",
            "vpcId": f"vpc-{_hex(rng, 17)}", "privateIpAddress": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "stateReason": {"code": "pending", "message": "pending"}, "architecture": "x86_64",
            "rootDeviceType": "ebs", "rootDeviceName": "/dev/xvda", "virtualizationType": "hvm",
            "hypervisor": "xen", "ebsOptimized": False, "enaSupport": True,
            "metadataOptions": {"state": "pending", "httpTokens": "required", "httpPutResponseHopLimit": 2,
                                "httpEndpoint": "enabled"},
        }]},
    }
    resources = [{"ARN": f"arn:aws:ec2:{region}:{account}:instance/{instance_id}", "accountId": account,
                  "type": "AWS::EC2::Instance"}]
    return request, response, resources


def _instance_ids(rng: random.Random, account: str, region: str) -> tuple[dict, None, None]:
    return {"instancesSet": {"items": [{"instanceId": _instance(rng)}]}}, None, None


def _describe(rng: random.Random, account: str, region: str) -> tuple[dict, None, None]:
    return {"maxResults": 1000, "filterSet": {}}, None, None


def _iam_user(rng: random.Random, account: str, region: str) -> tuple[dict, None, None]:
    return {"userName": f"user-{rng.randrange(500)}"}, None, None


def _assume_role(rng: random.Random, account: str, region: str) -> tuple[dict, dict, list]:
    role = f"arn:aws:iam::{account}:role/{rng.choice(['deployer', 'reader', 'etl'])}"
    session = f"session-{rng.randrange(10_000)}"
    response = {"credentials": {"accessKeyId": f"ASIA{_hex(rng, 16).upper()}", "sessionToken": "<redacted>",
                                "expiration": "Jan 1, 2030, 12:00:00 AM"},
                "assumedRoleUser": {"assumedRoleId": f"AROA{_hex(rng, 17).upper()}:{session}",
                                    "arn": f"{role.replace(':iam:', ':sts:').replace(':role/', ':assumed-role/')}/"
                                           f"{session}"}}
    return {"roleArn": role, "roleSessionName": session, "durationSeconds": 3600}, response, [
        {"ARN": role, "accountId": account, "type": "AWS::IAM::Role"}]


def _s3_object(rng: random.Random, account: str, region: str) -> tuple[dict, None, list]:
    bucket = f"data-{account[-4:]}-{rng.choice(['raw', 'curated', 'logs'])}"
    key = f"{rng.choice(['2026', 'reports', 'tmp'])}/part-{rng.randrange(100_000):05d}.parquet"
    request = {"bucketName": bucket, "Host": f"{bucket}.s3.{region}.amazonaws.com", "key": key}
    resources = [{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                 {"accountId": account, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"}]
    return request, None, resources


def _lambda_invoke(rng: random.Random, account: str, region: str) -> tuple[dict, None, list]:
    arn = f"arn:aws:lambda:{region}:{account}:function:{rng.choice(['resize', 'ingest', 'notify'])}"
    return {"functionName": arn, "invocationType": "RequestResponse"}, None, [
        {"accountId": account, "type": "AWS::Lambda::Function", "ARN": arn}]


def _kms_key(rng: random.Random, account: str, region: str) -> tuple[dict, None, list]:
    arn = f"arn:aws:kms:{region}:{account}:key/{uuid.UUID(int=rng.getrandbits(128))}"
    return {"keyId": arn, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, None, [
        {"accountId": account, "type": "AWS::KMS::Key", "ARN": arn}]


def _nothing(rng: random.Random, account: str, region: str) -> tuple[None, None, None]:
    return None, None, None


@dataclass(frozen=True)
class Api:
    """One API the simulator calls, with how often and how it fails."""

    source: str
    name: str
    read_only: bool
    weight: float
    build: RequestBuilder = _nothing
    category: str = "Management"
    event_type: str = "AwsApiCall"
    global_service: bool = False
    error_rate: float = 0.02
    errors: tuple[tuple[str, str], ...] = (("AccessDenied", "User is not authorized to perform this action"),)
    identity: str | None = None

    @property
    def key(self) -> str:
        return f"{self.source}:{self.name}"


EC2_DENIED = (("Client.UnauthorizedOperation", "You are not authorized to perform this operation."),
              ("Client.RequestLimitExceeded", "Request limit exceeded."))
CATALOG: tuple[Api, ...] = (
    Api("ec2.amazonaws.com", "DescribeInstances", True, 14, _describe, errors=EC2_DENIED),
    Api("ec2.amazonaws.com", "RunInstances", False, 2, _run_instances, errors=EC2_DENIED),
    Api("ec2.amazonaws.com", "StartInstances", False, 1, _instance_ids, errors=EC2_DENIED),
    Api("ec2.amazonaws.com", "StopInstances", False, 1, _instance_ids, errors=EC2_DENIED),
    Api("ec2.amazonaws.com", "TerminateInstances", False, 0.5, _instance_ids, errors=EC2_DENIED),
    Api("iam.amazonaws.com", "GetUser", True, 3, _iam_user, global_service=True,
        errors=(("NoSuchEntityException", "The user cannot be found."),)),
    Api("iam.amazonaws.com", "ListUsers", True, 2, global_service=True),
    Api("iam.amazonaws.com", "CreateUser", False, 0.3, _iam_user, global_service=True,
        errors=(("EntityAlreadyExistsException", "User already exists."),)),
    Api("iam.amazonaws.com", "AttachUserPolicy", False, 0.3, _iam_user, global_service=True),
    Api("sts.amazonaws.com", "AssumeRole", True, 10, _assume_role),
    Api("sts.amazonaws.com", "GetCallerIdentity", True, 4, error_rate=0.0),
    Api("sts.amazonaws.com", "AssumeRoleWithSAML", True, 0, _assume_role, identity="SAMLUser"),
    Api("sts.amazonaws.com", "AssumeRoleWithWebIdentity", True, 0, _assume_role, identity="WebIdentityUser"),
    Api("s3.amazonaws.com", "GetObject", True, 25, _s3_object, category="Data",
        errors=(("NoSuchKey", "The specified key does not exist."), ("AccessDenied", "Access Denied"))),
    Api("s3.amazonaws.com", "PutObject", False, 10, _s3_object, category="Data",
        errors=(("AccessDenied", "Access Denied"),)),
    Api("s3.amazonaws.com", "DeleteObject", False, 2, _s3_object, category="Data"),
    Api("s3.amazonaws.com", "ListBuckets", True, 1),
    Api("lambda.amazonaws.com", "Invoke", False, 12, _lambda_invoke, category="Data",
        errors=(("TooManyRequestsException", "Rate exceeded"),)),
    Api("lambda.amazonaws.com", "ListFunctions20150331", True, 1),
    Api("lambda.amazonaws.com", "UpdateFunctionCode20150331v2", False, 0.3, _lambda_invoke),
    Api("kms.amazonaws.com", "Decrypt", True, 8, _kms_key,
        errors=(("AccessDeniedException", "User is not authorized to perform kms:Decrypt"),)),
    Api("kms.amazonaws.com", "GenerateDataKey", True, 4, _kms_key),
    Api("kms.amazonaws.com", "Encrypt", True, 2, _kms_key),
    Api("signin.amazonaws.com", "ConsoleLogin", False, 0.4, event_type="AwsConsoleSignIn", global_service=True,
        errors=(("Failed authentication", "Failed authentication"),), error_rate=0.1),
)
IDENTITY_WEIGHTS = {
    "AssumedRole": 50, "IAMUser": 18, "AWSService": 14, "Role": 2, "FederatedUser": 3, "AWSAccount": 4,
    "IdentityCenterUser": 5, "Root": 1, "Directory": 0.5, "Unknown": 0.5,
}
USER_AGENTS = (
    "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.9",
    "Boto3/1.35.2 md/Botocore#1.35.2 ua/2.0 os/linux#5.10 md/arch#x86_64 lang/python#3.12.4 cfg/retry-mode#legacy",
    "aws-sdk-java/2.25.60 Linux/5.10 OpenJDK_64-Bit_Server_VM/17.0.11 Java/17.0.11 vendor/Amazon.com_Inc.",
    "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.171.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5",
    "terraform-provider-aws/5.60.0 HashiCorp-terraform/1.9.3 aws-sdk-go-v2/1.30.3",
)
SERVICE_CALLERS = ("ec2.amazonaws.com", "lambda.amazonaws.com", "autoscaling.amazonaws.com",
                   "cloudformation.amazonaws.com", "elasticloadbalancing.amazonaws.com")


@dataclass(frozen=True)
class Burst:
    """One API's rate multiplied by `factor` from `start_s` for `duration_s` seconds of simulated time."""

    api: Api
    factor: float
    start_s: float
    duration_s: float

    @classmethod
    def parse(cls, text: str) -> Burst:
        """Parse `eventSource:eventName:factor:start:duration`, times in seconds from the simulation start."""
        parts = text.split(":")
        if len(parts) != 5:
            raise ValueError(f"--burst {text!r}: expected eventSource:eventName:factor:start:duration")
        source, name, *numbers = parts
        api = next((a for a in CATALOG if a.source == source and a.name == name), None)
        if api is None:
            known = ", ".join(a.key for a in CATALOG)
            raise ValueError(f"--burst {text!r}: {source}:{name} is not an API the simulator calls; one of: {known}")
        try:
            factor, start, duration = (float(n) for n in numbers)
        except ValueError:
            raise ValueError(f"--burst {text!r}: factor, start and duration must be numbers") from None
        if factor < 1 or start < 0 or duration <= 0:
            raise ValueError(f"--burst {text!r}: factor must be >= 1, start >= 0 and duration > 0")
        return cls(api, factor, start, duration)

    def active(self, offset_s: float) -> bool:
        return self.start_s <= offset_s < self.start_s + self.duration_s


@dataclass(frozen=True)
class Limit:
    """Stop after `count` records or `duration_s` seconds of event time, whichever comes first (None: never)."""

    count: int | None = None
    duration_s: float | None = None


@dataclass
class TrafficModel:
    """Parameters of simulated traffic (see the module docstring)."""

    rate: float = 100.0
    seed: int = 0
    start: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    accounts: int = 3
    regions: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-southeast-2")
    duplicate_rate: float = 0.0
    diurnal_amplitude: float = 0.5
    bursts: tuple[Burst, ...] = ()

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate: must be > 0 events per second (got {self.rate})")
        if not 0 <= self.duplicate_rate < 1:
            raise ValueError(f"duplicate_rate: must be in [0, 1) (got {self.duplicate_rate})")
        if not 0 <= self.diurnal_amplitude < 1:
            raise ValueError(f"diurnal_amplitude: must be in [0, 1) (got {self.diurnal_amplitude})")
        if self.accounts < 1:
            raise ValueError(f"accounts: must be >= 1 (got {self.accounts})")
        for region in self.regions:  # region names become folders of the log files written with --output-dir
            if partition_of(region) is None:
                raise ValueError(f"regions: must be AWS region names like eu-west-1 (got {region[:40]!r})")

    def expected_rate(self, moment: datetime) -> float:
        """Mean events per second at this moment of event time, before bursts."""
        hour = moment.hour + moment.minute / 60
        diurnal = 1 + self.diurnal_amplitude * math.sin(2 * math.pi * (hour - 9) / 24)
        weekly = WEEKEND_FACTOR if moment.weekday() >= 5 else 1.0
        return self.rate * diurnal * weekly


class TrafficSimulator:
    """Generates CloudTrail records second by second of simulated event time."""

    def __init__(self, model: TrafficModel) -> None:
        self.model = model
        self.rng = random.Random(model.seed)
        rng = self.rng
        self.accounts = [f"{rng.randrange(10**11, 10**12)}" for _ in range(model.accounts)]
        self.apis = [a for a in CATALOG if a.identity is None]
        self.api_weights = _cumulative(a.weight for a in self.apis)
        self.federated_apis = [a for a in CATALOG if a.identity]
        self.identity_types = list(IDENTITY_WEIGHTS)
        self.identity_weights = _cumulative(IDENTITY_WEIGHTS.values())
        self.recent: deque[Record] = deque(maxlen=RECENT_FOR_DUPLICATES)
        self.generated = 0
        self.duplicates = 0

    def seconds(self, limit: Limit = Limit()) -> Iterator[tuple[datetime, list[Record]]]:
        """(second, records in event-time order) pairs from the model's start time, until the limit."""
        offset = 0
        while limit.duration_s is None or offset < limit.duration_s:
            room = None if limit.count is None else limit.count - self.generated - self.duplicates
            if room is not None and room <= 0:
                return
            moment = self.model.start + timedelta(seconds=offset)
            yield moment, self._second(moment, offset, room)
            offset += 1

    def records(self, limit: Limit = Limit()) -> Iterator[Record]:
        """Records in event-time order until the limit."""
        for _, batch in self.seconds(limit):
            yield from batch

    def _second(self, moment: datetime, offset: int, room: int | None) -> list[Record]:
        rng = self.rng
        expected = self.model.expected_rate(moment)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        batch = [self._call(self._pick_api(), stamp) for _ in range(poisson(rng, expected))]
        for burst in self.model.bursts:
            if burst.active(offset):
                extra = expected * burst.api.weight / self.api_weights[-1] * (burst.factor - 1)
                batch.extend(self._call(burst.api, stamp) for _ in range(poisson(rng, extra)))
        rng.shuffle(batch)
        out: list[Record] = []
        for record in batch:
            if room is not None and len(out) >= room:
                break
            out.append(record)
            self.recent.append(record)
            self.generated += 1
            if rng.random() < self.model.duplicate_rate and (room is None or len(out) < room):
                out.append(rng.choice(self.recent))
                self.duplicates += 1
        return out

    def _pick_api(self) -> Api:
        if self.rng.random() < FEDERATED_SIGN_IN_SHARE:
            return self.rng.choice(self.federated_apis)
        return self.rng.choices(self.apis, cum_weights=self.api_weights)[0]

    def _call(self, api: Api, stamp: str) -> Record:
        rng = self.rng
        account = rng.choice(self.accounts)
        region = GLOBAL_REGION if api.global_service else rng.choice(self.model.regions)
        identity_type = api.identity or rng.choices(self.identity_types, cum_weights=self.identity_weights)[0]
        identity = self._identity(identity_type, account)
        request, response, resources = api.build(rng, account, region)
        record: Record = {
            "eventVersion": "1.11",
            "userIdentity": identity,
            "eventTime": stamp,
            "eventSource": api.source,
            "eventName": api.name,
            "awsRegion": region,
            "sourceIPAddress": identity.get("invokedBy") or _ip(rng),
            "userAgent": identity.get("invokedBy") or rng.choice(USER_AGENTS),
        }
        if rng.random() < api.error_rate:
            code, message = rng.choice(api.errors)
            record["errorCode"], record["errorMessage"] = code, message
            response = None
        record["requestParameters"] = request
        record["responseElements"] = response
        if api.event_type == "AwsConsoleSignIn":
            record["additionalEventData"] = {"LoginTo": "https://console.aws.amazon.com/", "MobileVersion": "No",
                                             "MFAUsed": rng.choice(["Yes", "No"])}
            record["responseElements"] = {"ConsoleLogin": "Failure" if "errorCode" in record else "Success"}
        record["requestID"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        record["eventID"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        record["readOnly"] = api.read_only
        if resources:
            record["resources"] = resources
        record["eventType"] = api.event_type
        record["managementEvent"] = api.category == "Management"
        record["recipientAccountId"] = account
        record["eventCategory"] = api.category
        if "invokedBy" not in identity:
            record["tlsDetails"] = {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                                    "clientProvidedHostHeader": f"{api.source.split('.')[0]}.{region}.amazonaws.com"}
        return record

    def _identity(self, kind: str, account: str) -> dict[str, Any]:
        rng = self.rng
        key = f"AKIA{_hex(rng, 16).upper()}"
        if kind == "Root":
            return {"type": "Root", "principalId": account, "arn": f"arn:aws:iam::{account}:root",
                    "accountId": account, "accessKeyId": key}
        if kind == "IAMUser":
            name = rng.choice(["alice", "bob", "ci-bot", "backup-job", "carol"])
            return {"type": "IAMUser", "principalId": f"AIDA{_hex(rng, 17).upper()}",
                    "arn": f"arn:aws:iam::{account}:user/{name}", "accountId": account, "accessKeyId": key,
                    "userName": name}
        if kind in ("AssumedRole", "FederatedUser", "Role"):
            role = rng.choice(["deployer", "reader", "etl", "admin"])
            session = f"session-{rng.randrange(10_000)}"
            issuer = {"type": "Role", "principalId": f"AROA{_hex(rng, 17).upper()}",
                      "arn": f"arn:aws:iam::{account}:role/{role}", "accountId": account, "userName": role}
            context = {"sessionIssuer": issuer, "webIdFederationData": {},
                       "attributes": {"creationDate": "2026-01-01T00:00:00Z",
                                      "mfaAuthenticated": rng.choice(["true", "false"])}}
            if kind == "AssumedRole":
                return {"type": "AssumedRole", "principalId": f"{issuer['principalId']}:{session}",
                        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}", "accountId": account,
                        "accessKeyId": f"ASIA{_hex(rng, 16).upper()}", "sessionContext": context}
            if kind == "Role":
                return {"type": "Role", "principalId": issuer["principalId"], "arn": issuer["arn"],
                        "accountId": account, "userName": role}
            user = rng.choice(["alice", "bob"])
            context["sessionIssuer"] = {"type": "IAMUser", "principalId": account,
                                        "arn": f"arn:aws:iam::{account}:user/{user}", "accountId": account,
                                        "userName": user}
            return {"type": "FederatedUser", "principalId": f"{account}:{session}",
                    "arn": f"arn:aws:sts::{account}:federated-user/{session}", "accountId": account,
                    "accessKeyId": f"ASIA{_hex(rng, 16).upper()}", "sessionContext": context}
        if kind == "AWSService":
            return {"type": "AWSService", "invokedBy": rng.choice(SERVICE_CALLERS)}
        if kind == "AWSAccount":
            return {"type": "AWSAccount", "principalId": f"AIDA{_hex(rng, 17).upper()}",
                    "accountId": f"{rng.randrange(10**11, 10**12)}"}
        if kind == "IdentityCenterUser":
            store = f"arn:aws:identitystore::{account}:identitystore/d-{_hex(rng, 10)}"
            return {"type": "IdentityCenterUser", "accountId": account, "credentialId": _hex(rng, 32),
                    "onBehalfOf": {"userId": str(uuid.UUID(int=rng.getrandbits(128))), "identityStoreArn": store}}
        if kind == "SAMLUser":
            return {"type": "SAMLUser", "principalId": f"{_hex(rng, 20)}:alice@example.com",
                    "userName": "alice@example.com", "identityProvider": _hex(rng, 28)}
        if kind == "WebIdentityUser":
            return {"type": "WebIdentityUser", "principalId": f"accounts.google.com:{rng.randrange(10**20)}",
                    "userName": f"{rng.randrange(10**20)}", "identityProvider": "accounts.google.com"}
        return {"type": kind, "principalId": f"{_hex(rng, 10)}", "accountId": account,
                "userName": "directory-user@example.com" if kind == "Directory" else "unknown"}


def _cumulative(weights: Any) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def poisson(rng: random.Random, mean: float, normal_above: float = 30.0) -> int:
    """A Poisson draw: Knuth's method for small means, the normal approximation above `normal_above`."""
    if mean <= 0:
        return 0
    if mean > normal_above:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _ip(rng: random.Random) -> str:
    return f"{rng.choice([198, 203, 192])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
