"""Signing keys: the public key format ListPublicKeys returns, 0600 private keys, rotation, validity ranges."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kafkatrail.sinks.signing_keys import PublicKey, SigningKeys, keys_between, load_pkcs1, read_public_keys, verify

DAY = 86_400


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_public_key_is_base64_pkcs1_der_with_an_md5_fingerprint(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path, rotation_s=30 * DAY, clock=Clock(1_000_000))
    key = keys.current()
    der = base64.b64decode(key.value)
    assert key.value.startswith("MIIBCgKCAQEA"), "2048-bit PKCS #1 RSAPublicKey"
    assert key.fingerprint == hashlib.md5(der).hexdigest()
    assert (key.valid_from, key.valid_until) == (1_000_000, 1_000_000 + 30 * DAY)
    assert key.to_api() == {"Value": key.value, "ValidityStartTime": 1_000_000,
                            "ValidityEndTime": 1_000_000 + 30 * DAY, "Fingerprint": key.fingerprint}
    assert stat.S_IMODE((tmp_path / f"{key.fingerprint}.pem").stat().st_mode) == 0o600
    assert verify(load_pkcs1(der), keys.sign(key, b"message"), b"message")
    assert not verify(load_pkcs1(der), keys.sign(key, b"message"), b"other message")


def test_keys_rotate_on_schedule_and_retired_keys_stay_listed(tmp_path: Path) -> None:
    clock = Clock(1_000_000)
    keys = SigningKeys(tmp_path, rotation_s=DAY, clock=clock)
    first = keys.current()
    clock.now += DAY - 1
    assert keys.current() == first
    clock.now += 1
    second = keys.current()
    assert second.fingerprint != first.fingerprint
    listed = read_public_keys(tmp_path)
    assert [k.fingerprint for k in listed] == [first.fingerprint, second.fingerprint]
    assert listed[0].valid_until == second.valid_from
    reopened = SigningKeys(tmp_path, rotation_s=DAY, clock=clock)
    assert reopened.current() == second
    assert verify(load_pkcs1(base64.b64decode(second.value)), reopened.sign(second, b"m"), b"m")


def test_a_subject_public_key_info_is_not_taken_for_pkcs1() -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="PKCS #1"):
        load_pkcs1(spki)


@pytest.mark.parametrize(("start", "end", "listed"), [
    (0, 50, []),
    (0, 100, ["a"]),
    (150, 160, ["a"]),
    (199, 201, ["a", "b"]),
    (250, 400, ["b"]),
    (301, 400, []),
])
def test_list_public_keys_returns_keys_whose_validity_intersects_the_range(start: int, end: int,
                                                                           listed: list[str]) -> None:
    keys = [PublicKey("a", "", 100, 200), PublicKey("b", "", 200, 300)]
    assert [k.fingerprint for k in keys_between(keys, start, end)] == listed
