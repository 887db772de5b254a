"""The RSA keys that sign digest files, and the public keys ListPublicKeys serves (docs/cloudtrail.md §4.4, §10).

Keys live in one folder shared by the digest worker (which signs) and `kafkatrail api` (which lists):

* `public-keys.json`: every key ever used, newest last, as `{"fingerprint", "value", "valid_from",
  "valid_until", "kms_key_id"?}` (value: base64 of the PKCS #1 DER public key; times: epoch seconds).
  Retired keys stay listed so digests signed with them can still be validated.
* `<fingerprint>.pem`: the private key of a file key, PKCS #8 PEM, mode 0600 (never for a KMS key).

A file key is used for `rotation_s`; then a fresh RSA-2048 key takes over and the old one's validity ends.
With `kms_key_id` set, AWS KMS signs (Sign API, RSASSA_PKCS1_V1_5_SHA_256) and no private key touches disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

INDEX = "public-keys.json"
KEY_BITS = 2048


@dataclass(frozen=True)
class PublicKey:
    """One signing key's public half, as ListPublicKeys returns it."""

    fingerprint: str
    value: str
    valid_from: int
    valid_until: int
    kms_key_id: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {"Value": self.value, "ValidityStartTime": self.valid_from, "ValidityEndTime": self.valid_until,
                "Fingerprint": self.fingerprint}


def pkcs1_der(public_key: rsa.RSAPublicKey) -> bytes:
    """The DER `RSAPublicKey` (PKCS #1) encoding the validator loads."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def fingerprint(der: bytes) -> str:
    """Lowercase hex MD5 of the PKCS #1 DER bytes, as AWS computes key fingerprints."""
    return hashlib.md5(der, usedforsecurity=False).hexdigest()


def load_pkcs1(der: bytes) -> rsa.RSAPublicKey:
    """The RSA public key of PKCS #1 DER bytes; ValueError if they are anything else."""
    first_member = 2 + (der[1] & 0x7F if len(der) > 1 and der[1] & 0x80 else 0)
    if len(der) <= first_member or der[0] != 0x30 or der[first_member] != 0x02:
        raise ValueError("not a PKCS #1 RSAPublicKey (SEQUENCE of INTEGERs)")
    key = serialization.load_der_public_key(der)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def verify(public_key: rsa.RSAPublicKey, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is a SHA256withRSA (PKCS #1 v1.5) signature of `message` by `public_key`."""
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def read_public_keys(folder: Path) -> list[PublicKey]:
    """Every key in the folder's index, oldest first (empty if there is none yet)."""
    try:
        entries = json.loads((folder / INDEX).read_text())
    except FileNotFoundError:
        return []
    return [PublicKey(**entry) for entry in entries]


def keys_between(keys: list[PublicKey], start: int, end: int) -> list[PublicKey]:
    """The keys whose validity intersects [start, end] (ListPublicKeys' semantics)."""
    return [key for key in keys if key.valid_from <= end and key.valid_until >= start]


class SigningKeys:
    """Signs digests with the current key, rotating file keys on schedule; safe to call from one process."""

    def __init__(self, folder: Path, rotation_s: int, kms_key_id: str | None = None, kms_client: Any = None,
                 clock: Any = time.time) -> None:
        self.folder = folder
        self.rotation_s = rotation_s
        self.kms_key_id = kms_key_id
        self.kms = kms_client
        self.clock = clock
        self._lock = threading.Lock()
        self._private: dict[str, rsa.RSAPrivateKey] = {}
        self.folder.mkdir(parents=True, exist_ok=True)

    def sign(self, key: PublicKey, message: bytes) -> bytes:
        """The SHA256withRSA (PKCS #1 v1.5) signature of `message` by `key` (one `current()` returned)."""
        with self._lock:
            if key.kms_key_id:
                response = self.kms.sign(KeyId=key.kms_key_id, Message=message, MessageType="RAW",
                                         SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")
                return response["Signature"]
            private = self._private_key(key.fingerprint)
            return private.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def current(self) -> PublicKey:
        """The key to sign with now: the newest one if still valid, else a new one (the old one retired)."""
        with self._lock:
            return self._current()

    def _current(self) -> PublicKey:
        now = int(self.clock())
        keys = read_public_keys(self.folder)
        if self.kms_key_id:
            return self._kms_key(keys, now)
        if keys and not keys[-1].kms_key_id and keys[-1].valid_from + self.rotation_s > now:
            return keys[-1]
        return self._new_file_key(keys, now)

    def _kms_key(self, keys: list[PublicKey], now: int) -> PublicKey:
        if keys and keys[-1].kms_key_id == self.kms_key_id:
            if keys[-1].valid_until > now + self.rotation_s // 2:
                return keys[-1]
            keys[-1] = PublicKey(**{**asdict(keys[-1]), "valid_until": now + self.rotation_s})
            self._write_index(keys)
            return keys[-1]
        spki = self.kms.get_public_key(KeyId=self.kms_key_id)["PublicKey"]
        public = serialization.load_der_public_key(spki)
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError(f"KMS key {self.kms_key_id}: not an RSA key (digests are signed SHA256withRSA)")
        der = pkcs1_der(public)
        key = PublicKey(fingerprint(der), base64.b64encode(der).decode(), now, now + self.rotation_s,
                        kms_key_id=self.kms_key_id)
        self._write_index([*self._retire(keys, now), key])
        return key

    def _new_file_key(self, keys: list[PublicKey], now: int) -> PublicKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        der = pkcs1_der(private.public_key())
        key = PublicKey(fingerprint(der), base64.b64encode(der).decode(), now, now + self.rotation_s)
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        path = self.folder / f"{key.fingerprint}.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(pem)
        self._private[key.fingerprint] = private
        self._write_index([*self._retire(keys, now), key])
        return key

    @staticmethod
    def _retire(keys: list[PublicKey], now: int) -> list[PublicKey]:
        """The keys with the newest one's validity ended now (it stays listable)."""
        if keys and keys[-1].valid_until > now:
            keys = [*keys[:-1], PublicKey(**{**asdict(keys[-1]), "valid_until": now})]
        return keys

    def _private_key(self, key_fingerprint: str) -> rsa.RSAPrivateKey:
        if key_fingerprint not in self._private:
            loaded = serialization.load_pem_private_key((self.folder / f"{key_fingerprint}.pem").read_bytes(), None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{key_fingerprint}.pem: not an RSA private key")
            self._private[key_fingerprint] = loaded
        return self._private[key_fingerprint]

    def _write_index(self, keys: list[PublicKey]) -> None:
        temporary = self.folder / f".{INDEX}.{os.getpid()}"
        temporary.write_text(json.dumps([{k: v for k, v in asdict(key).items() if v is not None} for key in keys],
                                        indent=1))
        temporary.replace(self.folder / INDEX)
