"""The TLS 1.2 PRF (RFC 5246 §5) and the secrets derived with it.

``P_hash`` is HMAC-based (RFC 2104). :class:`HmacKey` computes the two key pads once, as hashlib
objects already fed ``K xor ipad`` / ``K xor opad``; each HMAC is then two ``copy()``s of them.
That is about five times cheaper than ``hmac.new`` per block (a PRF output block costs two HMACs),
and a handshake keys the master secret once for the key block and both Finished messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

MASTER_SECRET_LEN = 48
VERIFY_DATA_LEN = 12

_CONSTRUCTORS: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_CLIENT_FINISHED = b"client finished"
_SERVER_FINISHED = b"server finished"


def new_hash(hash_name: str, data: bytes = b"") -> Any:
    """A hashlib object for ``hash_name`` (direct constructor: no by-name lookup per call)."""
    new = _CONSTRUCTORS.get(hash_name)
    return new(data) if new is not None else hashlib.new(hash_name, data)


class HmacKey:
    """HMAC-<hash> keyed once with ``secret``: ``mac()`` and ``p_hash()`` reuse the pads."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, hash_name: str, secret: bytes) -> None:
        new = _CONSTRUCTORS.get(hash_name) or (lambda data=b"": hashlib.new(hash_name, data))
        inner = new()
        block = inner.block_size
        if len(secret) > block:
            secret = new(secret).digest()
        key = secret.ljust(block, b"\0")
        inner.update(key.translate(_IPAD))
        outer = new(key.translate(_OPAD))
        self._inner, self._outer = inner, outer

    def mac(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest

    def p_hash(self, seed: bytes, length: int) -> bytes:
        """P_<hash>(secret, seed) truncated to ``length`` bytes."""
        inner, outer = self._inner.copy, self._outer.copy
        out = b""
        a = seed
        while len(out) < length:
            h = inner()
            h.update(a)
            o = outer()
            o.update(h.digest())
            a = o.digest()  # A(i) = HMAC(secret, A(i-1))
            h = inner()
            h.update(a + seed)
            o = outer()
            o.update(h.digest())
            out += o.digest()
        return out if len(out) == length else out[:length]

    def prf(self, label: bytes, seed: bytes, length: int) -> bytes:
        return self.p_hash(label + seed, length)

    def __repr__(self) -> str:
        return "HmacKey(<secret>)"


def p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """P_<hash>(secret, seed) truncated to ``length`` bytes."""
    return HmacKey(hash_name, secret).p_hash(seed, length)


def prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """PRF(secret, label, seed) = P_<hash>(secret, label + seed)."""
    return HmacKey(hash_name, secret).p_hash(label + seed, length)


def master_secret(hash_name: str, pms: bytes, client_random: bytes, server_random: bytes) -> bytes:
    return prf(hash_name, pms, b"master secret", client_random + server_random, MASTER_SECRET_LEN)


def extended_master_secret(hash_name: str, pms: bytes, session_hash: bytes) -> bytes:
    """RFC 7627 §4: the master secret bound to the handshake transcript up to ClientKeyExchange."""
    return prf(hash_name, pms, b"extended master secret", session_hash, MASTER_SECRET_LEN)


def key_block(
    hash_name: str,
    master: bytes | HmacKey,
    server_random: bytes,
    client_random: bytes,
    length: int,
) -> bytes:
    """``master`` may be an :class:`HmacKey` already keyed with the master secret."""
    key = master if isinstance(master, HmacKey) else HmacKey(hash_name, master)
    return key.p_hash(b"key expansion" + server_random + client_random, length)


def verify_data(
    hash_name: str, master: bytes | HmacKey, sender: str, handshake_hash: bytes
) -> bytes:
    """Finished.verify_data; ``sender`` is ``"client"`` or ``"server"``; ``master`` may be an
    :class:`HmacKey` already keyed with the master secret."""
    label = _CLIENT_FINISHED if sender == "client" else _SERVER_FINISHED
    key = master if isinstance(master, HmacKey) else HmacKey(hash_name, master)
    return key.p_hash(label + handshake_hash, VERIFY_DATA_LEN)


__all__ = [
    "MASTER_SECRET_LEN",
    "VERIFY_DATA_LEN",
    "HmacKey",
    "extended_master_secret",
    "key_block",
    "master_secret",
    "new_hash",
    "p_hash",
    "prf",
    "verify_data",
]
