"""What a command that waits for Kafka or AWS says when it gets no useful answer: one line naming what could
not be reached (or refused), at which address, and what to do about it (`Unreachable`).

`check_kafka` asks the broker for its metadata within a timeout, so a command fails before it starts its
work rather than somewhere inside it; `kafka_failure` and `aws_failure` turn the errors of a command that
did start into the same kind of line. No line quotes a setting's value: only addresses, which are not
secret, and the services' own messages, which hold none.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from kafkatrail.core.kafka_clients import kafka_config
from kafkatrail.core.settings import Settings

KAFKA_HINT = "start it with `kafkatrail stack up`, or check KAFKATRAIL_BOOTSTRAP_SERVERS"
AWS_HINT = "start the AWS stand-in with `kafkatrail stack up`, or check AWS_ENDPOINT_URL (or aws.endpoint_url)"
CREDENTIALS_HINT = "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
KAFKA_AUTH_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
AWS_CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "UnrecognizedClientException", "InvalidClientTokenId",
    "ExpiredToken", "ExpiredTokenException", "AccessDenied", "AccessDeniedException", "AuthFailure",
    "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken",
})
REASON = re.compile(r": ([^:(]+?) \(after \d+ms")  # librdkafka's "... failed: Connection refused (after 0ms ...)"
MARKUP = re.compile(r"<[^>]*>")  # a stand-in's HTML error page instead of AWS's XML or JSON
MESSAGE_CHARS = 200  # of a service's error message (an HTML error page says nothing more useful after that)
UNANSWERED = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)


class Unreachable(Exception):
    """Kafka or AWS could not be reached, or refused the call: the one line a command ends with (exit code 2)."""


def check_kafka(settings: Settings, timeout_s: float) -> None:
    """Return once the broker answers a metadata request; raise Unreachable if it does not within `timeout_s`."""
    refused: list[KafkaError] = []
    admin = AdminClient(kafka_config(settings, error_cb=lambda error: refused.append(error)))
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # serves the error callbacks queued meanwhile
        error = next((e for e in refused if e.code() in KAFKA_AUTH_CODES), exc.args[0])
        reasons = [match.group(1) for match in (REASON.search(e.str()) for e in refused) if match]
        raise kafka_failure(settings, error, reasons[-1] if reasons else None, timeout_s) from None


def kafka_failure(settings: Settings, error: KafkaError, reason: str | None = None,
                  timeout_s: float | None = None) -> Unreachable:
    """The line for a broker that refused the client's credentials, or did not answer (within `timeout_s`); `reason`
    is librdkafka's last word on why a connection failed, if it gave one."""
    where = settings.bootstrap_servers
    if error.code() in KAFKA_AUTH_CODES:
        return Unreachable(f"the Kafka broker at {where} refused the client's credentials ({error.str()}); check "
                           "kafka_client_config (KAFKATRAIL_KAFKA_CLIENT_CONFIG)")
    within = f" within {timeout_s:g} s" if timeout_s is not None else ""
    return Unreachable(f"cannot reach the Kafka broker at {where}: {reason or error.name()}, no answer{within}; "
                       f"{KAFKA_HINT}")


def timeout_failure(settings: Settings) -> Unreachable:
    """The line for a Kafka request that timed out while a command was under way."""
    return Unreachable(f"the Kafka broker at {settings.bootstrap_servers} stopped answering in time; {KAFKA_HINT}")


def aws_endpoint(settings: Settings) -> str:
    """Where AWS calls go, as far as settings and the environment say (botocore resolves the rest)."""
    return settings.aws.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "AWS's public endpoints"


def aws_failure(settings: Settings, exc: BotoCoreError | ClientError) -> Unreachable:
    """The line for an AWS call that was not answered, had no credentials, or was refused."""
    if isinstance(exc, UNANSWERED):
        url = urlsplit(str(exc.kwargs.get("endpoint_url", ""))) if hasattr(exc, "kwargs") else None
        where = f"{url.scheme}://{url.netloc}" if url and url.netloc else aws_endpoint(settings)
        return Unreachable(f"cannot reach AWS at {where}: {type(exc).__name__}; {AWS_HINT}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return Unreachable(f"no usable AWS credentials; {CREDENTIALS_HINT}")
    if isinstance(exc, ClientError):  # AWS answered: what matters is what it said, not where it is
        error = exc.response.get("Error", {})
        code, operation = str(error.get("Code", "Unknown")), exc.operation_name
        if code in AWS_CREDENTIAL_CODES:
            return Unreachable(f"AWS refused the credentials for {operation} ({code}); {CREDENTIALS_HINT}")
        if code == "NoSuchBucket":
            bucket = f"S3 bucket {error['BucketName']}" if error.get("BucketName") else "the S3 bucket"
            return Unreachable(f"{bucket} does not exist ({operation}); check the bucket name, or the trail's "
                               "S3BucketName")
        message = " ".join(MARKUP.sub(" ", str(error.get("Message", ""))).split())[:MESSAGE_CHARS]
        return Unreachable(f"AWS refused {operation}: {code}" + (f": {message}" if message else ""))
    return Unreachable(f"AWS call failed at {aws_endpoint(settings)}: {type(exc).__name__}")
