"""Who is calling: the credentials file, and AWS Signature Version 4 checked with botocore's own signer.

The credentials file (`api.credentials_file`) is TOML, one table per access key::

    [[principals]]
    access_key_id = "AKIAEXAMPLEKEY000001"
    secret_access_key = "..."
    account_id = "111122223333"
    organization_id = "o-a1b2c3d4e5"      # optional: the account's organization
    organization_management = true        # optional: the organization's management account

It must not be readable or writable by group or others (mode 0600 or stricter): the API refuses to start
otherwise. A principal sees and changes its own account's trails; an organization's management account also
the organization trails of its organization.

Verification (`verify_request`) rebuilds the request as botocore's `AWSRequest` from the headers the client
signed, with the client's own `X-Amz-Date`, lets `botocore.auth.SigV4Auth` compute the signature for the
client's secret, and compares with `hmac.compare_digest`. Errors are AWS's: no `Authorization` header ->
`MissingAuthenticationTokenException`; a malformed one -> `IncompleteSignatureException`; an unknown access key
-> `UnrecognizedClientException`; a signature that does not match, or a date more than 5 minutes from the
server's clock -> `InvalidSignatureException`. No message carries a secret or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kafkatrail.api.errors import ApiError

SERVICE = "cloudtrail"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 300
AMZ_DATE = "%Y%m%dT%H%M%SZ"
_ACCOUNT = re.compile(r"[0-9]{12}")
_ORGANIZATION = re.compile(r"o-[a-z0-9]{10,32}")
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]{4,128}")
_CREDENTIAL = re.compile(r"([^/]+)/([0-9]{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


class CredentialsFileError(ValueError):
    """The credentials file is unusable (missing, unsafe mode, malformed); the message never holds a secret."""


@dataclass(frozen=True)
class Principal:
    """The caller: its access key and the account it acts for. `account_id` None: anonymous (sees every trail)."""

    access_key_id: str | None
    account_id: str | None
    organization_id: str | None = None
    organization_management: bool = False
    secret_access_key: str = ""

    def __repr__(self) -> str:  # never the secret
        return f"Principal(access_key_id={self.access_key_id!r}, account_id={self.account_id!r})"


ANONYMOUS = Principal(access_key_id=None, account_id=None)


def load_credentials(path: Path) -> dict[str, Principal]:
    """The principals of a credentials file, by access key id; CredentialsFileError naming the problem."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CredentialsFileError(f"credentials file {path}: cannot be read ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsFileError(f"credentials file {path}: mode {stat.S_IMODE(mode):04o} lets group or others "
                                   "read or write it; make it 0600 (chmod 600)")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CredentialsFileError(f"credentials file {path}: not a TOML file ({type(exc).__name__})") from None
    entries = document.get("principals")
    if not isinstance(entries, list) or set(document) != {"principals"}:
        raise CredentialsFileError(f"credentials file {path}: must hold [[principals]] tables and nothing else")
    principals: dict[str, Principal] = {}
    for index, entry in enumerate(entries):
        where = f"credentials file {path}: principals[{index}]"
        allowed = {"access_key_id", "secret_access_key", "account_id", "organization_id", "organization_management"}
        if not isinstance(entry, dict) or not set(entry) <= allowed:
            raise CredentialsFileError(f"{where}: members are {', '.join(sorted(allowed))}")
        key, secret, account = entry.get("access_key_id"), entry.get("secret_access_key"), entry.get("account_id")
        organization, management = entry.get("organization_id"), entry.get("organization_management", False)
        if not isinstance(key, str) or not _ACCESS_KEY.fullmatch(key):
            raise CredentialsFileError(f"{where}: access_key_id must be 4 to 128 letters and digits")
        if not isinstance(secret, str) or not secret or '"' in secret or "\\" in secret:
            raise CredentialsFileError(f"{where}: secret_access_key must be a non-empty string without quotes or "
                                       "backslashes")
        if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
            raise CredentialsFileError(f"{where}: account_id must be a 12-digit string")
        if organization is not None and not (isinstance(organization, str) and _ORGANIZATION.fullmatch(organization)):
            raise CredentialsFileError(f"{where}: organization_id must look like o-a1b2c3d4e5")
        if not isinstance(management, bool) or (management and organization is None):
            raise CredentialsFileError(f"{where}: organization_management must be a boolean, and needs organization_id")
        if key in principals:
            raise CredentialsFileError(f"{where}: access key {key} appears twice")
        principals[key] = Principal(key, account, organization, management, secret)
    return principals


def write_credentials(path: Path, principals: list[Principal]) -> None:
    """Write a credentials file (mode 0600 from the start: the secret is never readable by others)."""
    lines = []
    for principal in principals:
        lines += ["[[principals]]", f'access_key_id = "{principal.access_key_id}"',
                  f'secret_access_key = "{principal.secret_access_key}"', f'account_id = "{principal.account_id}"']
        if principal.organization_id:
            lines.append(f'organization_id = "{principal.organization_id}"')
        if principal.organization_management:
            lines.append("organization_management = true")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines))
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class SignedBy:
    """A verified request: who signed it and the region of its credential scope."""

    principal: Principal
    region: str


def parse_authorization(header: str) -> tuple[str, str, str, str, list[str], str]:
    """(access key id, scope date, region, service, signed headers, signature) of a SigV4 Authorization header."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ApiError("IncompleteSignatureException", f"Authorization: only {ALGORITHM} is supported")
    parts: dict[str, str] = {}
    for component in rest.split(","):
        name, sep, value = component.strip().partition("=")
        if sep:
            parts[name] = value
    credential, signed, signature = parts.get("Credential"), parts.get("SignedHeaders"), parts.get("Signature")
    if not credential or not signed or not signature:
        raise ApiError("IncompleteSignatureException",
                       "Authorization: must hold Credential=, SignedHeaders= and Signature=")
    match = _CREDENTIAL.fullmatch(credential)
    if match is None:
        raise ApiError("IncompleteSignatureException",
                       "Authorization: Credential must be <access key>/<yyyymmdd>/<region>/<service>/aws4_request")
    names = signed.split(";")
    if names != sorted(names) or not all(names):
        raise ApiError("IncompleteSignatureException", "Authorization: SignedHeaders must be sorted header names")
    return match[1], match[2], match[3], match[4], names, signature


def verify_request(method: str, url: str, headers: Mapping[str, str], body: bytes,
                   principals: Mapping[str, Principal], now: float) -> SignedBy:
    """The principal that signed this request; ApiError as AWS answers otherwise.

    `headers` must look names up case-insensitively (aiohttp's and botocore's header maps do); `url` is the URL
    the client addressed (scheme, Host header, path and query).
    """
    header = headers.get("Authorization")
    if not header:
        raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token", status=403)
    access_key, scope_date, region, service, signed, signature = parse_authorization(header)
    principal = principals.get(access_key)
    if principal is None:
        raise ApiError("UnrecognizedClientException", "The security token included in the request is invalid.")
    if service != SERVICE:
        raise ApiError("InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'.")
    if "host" not in signed or "x-amz-date" not in signed:
        raise ApiError("InvalidSignatureException", "SignedHeaders: must include host and x-amz-date")
    amz_date = headers.get("X-Amz-Date", "")
    try:
        moment = datetime.strptime(amz_date, AMZ_DATE).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ApiError("IncompleteSignatureException", "X-Amz-Date: must be a date like 20240501T090000Z") from None
    if amz_date[:8] != scope_date:
        raise ApiError("InvalidSignatureException", "Credential: the scope's date must be the day of X-Amz-Date")
    if abs(now - moment) > MAX_SKEW_S:
        def stamp(seconds: float) -> str:
            return datetime.fromtimestamp(seconds, UTC).strftime(AMZ_DATE)
        relation = "earlier" if moment < now else "later"
        bound = now - MAX_SKEW_S if moment < now else now + MAX_SKEW_S
        raise ApiError("InvalidSignatureException", f"Signature expired: {amz_date} is now {relation} than "
                       f"{stamp(bound)} ({stamp(now)} {'-' if moment < now else '+'} 5 min.)")
    body_sha = hashlib.sha256(body).hexdigest()
    content_sha = headers.get("X-Amz-Content-SHA256")
    if content_sha is not None and content_sha != body_sha:
        raise ApiError("InvalidSignatureException", "X-Amz-Content-SHA256: does not match the body")
    rebuilt = AWSRequest(method=method, url=url, data=body,
                         headers={name: _header_value(headers, name) for name in signed})
    rebuilt.context["timestamp"] = amz_date
    signer = _Signer(Credentials(access_key, principal.secret_access_key), service, region, body_sha)
    canonical = signer.canonical_request(rebuilt)
    expected = signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
    if not hmac.compare_digest(expected, signature):
        raise ApiError("InvalidSignatureException", "The request signature we calculated does not match the "
                       "signature you provided. Check your AWS Secret Access Key and signing method.")
    return SignedBy(principal, region)


class _Signer(SigV4Auth):
    """botocore's SigV4 signer, given the body's SHA-256 (computed once above) instead of hashing it again."""

    def __init__(self, credentials: Credentials, service: str, region: str, body_sha: str) -> None:
        super().__init__(credentials, service, region)
        self._body_sha = body_sha

    def payload(self, request: AWSRequest) -> str:
        return self._body_sha


def _header_value(headers: Mapping[str, str], name: str) -> str:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values = getall(name, [])
        if len(values) > 1:
            return ",".join(v.strip() for v in values)
        return values[0] if values else ""
    return headers.get(name, "")
