# Vectors: P_SHA256/P_SHA384 "test label" vectors published on the IETF TLS WG list (https://www.ietf.org/mail-archive/web/tls/current/msg03416.html); master/EMS vectors generated independently with OpenSSL 3.0 `openssl kdf ... TLS1-PRF` (RFC 5246 §8.1, RFC 7627 §4 labels).
"""Known-answer tests for the TLS 1.2 PRF, master secret and extended master secret."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from plugins.tls import prf

PMS = bytes(range(48))

PRF_VECTORS = [
    (
        "sha256",
        "9bbe436ba940f017b17652849a71db35",
        "a0ba9f936cda311827a6f796ffd5198c",
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
        "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab"
        "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701"
        "87347b66",
    ),
    (
        "sha384",
        "b80b733d6ceefcdc71566ea48e5567df",
        "cd665cf6a8447dd6ff8b27555edb7465",
        "7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cd"
        "e9ca0faa60be9fe34f82b1233c9146a0e534cb400fed2700884f9dc236f80edd"
        "8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd4abfdad05d918425"
        "9b5bf8cd4d90fa0d31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee6"
        "91c8f3a26854308d5eaa3be85e0990703d73e56f",
    ),
]


@pytest.mark.parametrize(("hash_name", "secret", "seed", "expected"), PRF_VECTORS)
def test_prf_published_vectors(hash_name: str, secret: str, seed: str, expected: str) -> None:
    out = prf.prf(
        hash_name, bytes.fromhex(secret), b"test label", bytes.fromhex(seed), len(expected) // 2
    )
    assert out.hex() == expected


@pytest.mark.parametrize("length", [0, 1, 31, 32, 33, 100])
def test_prf_output_is_prefix_stable(length: int) -> None:
    full = prf.prf("sha256", b"k", b"l", b"s", 100)
    assert prf.prf("sha256", b"k", b"l", b"s", length) == full[:length]


def test_master_secret_known_answer() -> None:
    client_random, server_random = bytes(range(32, 64)), bytes(range(64, 96))
    ms = prf.master_secret("sha256", PMS, client_random, server_random)
    assert ms.hex() == (
        "cf8d72bb4fda026122dba8aaed446b085151157dbbd04d5be31ab43379174edf"
        "d454d4852e1a89a94d12aa004561baff"
    )


@pytest.mark.parametrize(
    ("hash_name", "expected"),
    [
        (
            "sha256",
            "ef0aa850cac0cb11b92e79a9974f67b6d33f1e076d8b62990a53d80c424b753f"
            "e5b55fbeea22ca2ea47aabaef4db7909",
        ),
        (
            "sha384",
            "9659a3ba0d157b6afd0fd20104bd4bd026fb3c55d61feab33fa5c269d5eb0766"
            "5ed809fe5a81e3be3b97e6a4633b2ed1",
        ),
    ],
)
def test_extended_master_secret_known_answer(hash_name: str, expected: str) -> None:
    session_hash = hashlib.new(hash_name, b"tapnf transcript").digest()
    ems = prf.extended_master_secret(hash_name, PMS, session_hash)
    assert ems.hex() == expected
    # EMS differs from the classic derivation over the same secret
    assert ems != prf.master_secret(hash_name, PMS, session_hash[:32], session_hash[:32])


def test_verify_data_is_12_bytes_and_sender_bound() -> None:
    ms, h = bytes(48), hashlib.sha256(b"x").digest()
    client = prf.verify_data("sha256", ms, "client", h)
    server = prf.verify_data("sha256", ms, "server", h)
    assert len(client) == len(server) == 12 and client != server
    assert client == prf.prf("sha256", ms, b"client finished", h, 12)


@pytest.mark.parametrize("hash_name", ["sha1", "sha256", "sha384", "sha512", "sha224"])
@pytest.mark.parametrize("key_len", [0, 1, 48, 64, 65, 128, 129, 200])
def test_hmac_key_matches_stdlib_hmac(hash_name: str, key_len: int) -> None:
    # The precomputed-pad HMAC against Python's hmac (RFC 2104), keys around the block sizes
    # (64 for SHA-1/224/256, 128 for SHA-384/512; longer keys are hashed first).
    key = bytes((7 * i + key_len) & 0xFF for i in range(key_len))
    keyed = prf.HmacKey(hash_name, key)
    for msg in (b"", b"abc", bytes(range(256)) * 3):
        assert keyed.mac(msg) == hmac.digest(key, msg, hash_name)
    assert keyed.mac(b"abc") == keyed.mac(b"abc")  # the pads are not consumed by use


def test_keyed_master_secret_gives_the_same_key_block_and_finished() -> None:
    ms, h = bytes(range(48)), hashlib.sha384(b"t").digest()
    keyed = prf.HmacKey("sha384", ms)
    assert prf.key_block("sha384", keyed, b"s" * 32, b"c" * 32, 88) == prf.key_block(
        "sha384", ms, b"s" * 32, b"c" * 32, 88
    )
    assert prf.verify_data("sha384", keyed, "server", h) == prf.prf(
        "sha384", ms, b"server finished", h, 12
    )
    assert "HmacKey(<secret>)" == repr(keyed)
