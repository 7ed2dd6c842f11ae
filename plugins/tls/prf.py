"""The TLS 1.2 PRF (RFC 5246 §5) and the secrets derived with it.

``P_hash`` is HMAC-based; the HMAC key pads are computed once per secret (``hmac.new`` then
``copy()`` per block) because a full handshake runs the PRF five times over the same master secret.
"""

from __future__ import annotations

import hmac

MASTER_SECRET_LEN = 48
VERIFY_DATA_LEN = 12


def p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """P_<hash>(secret, seed) truncated to ``length`` bytes."""
    keyed = hmac.new(secret, digestmod=hash_name)  # pads computed once, copied per block
    out = bytearray()
    a = seed
    while len(out) < length:
        h = keyed.copy()
        h.update(a)
        a = h.digest()
        h = keyed.copy()
        h.update(a)
        h.update(seed)
        out += h.digest()
    return bytes(out[:length])


def prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """PRF(secret, label, seed) = P_<hash>(secret, label + seed)."""
    return p_hash(hash_name, secret, label + seed, length)


def master_secret(hash_name: str, pms: bytes, client_random: bytes, server_random: bytes) -> bytes:
    return prf(hash_name, pms, b"master secret", client_random + server_random, MASTER_SECRET_LEN)


def extended_master_secret(hash_name: str, pms: bytes, session_hash: bytes) -> bytes:
    """RFC 7627 §4: the master secret bound to the handshake transcript up to ClientKeyExchange."""
    return prf(hash_name, pms, b"extended master secret", session_hash, MASTER_SECRET_LEN)


def key_block(
    hash_name: str, master: bytes, server_random: bytes, client_random: bytes, length: int
) -> bytes:
    return prf(hash_name, master, b"key expansion", server_random + client_random, length)


def verify_data(hash_name: str, master: bytes, sender: str, handshake_hash: bytes) -> bytes:
    """Finished.verify_data; ``sender`` is ``"client"`` or ``"server"``."""
    label = b"client finished" if sender == "client" else b"server finished"
    return prf(hash_name, master, label, handshake_hash, VERIFY_DATA_LEN)


__all__ = [
    "MASTER_SECRET_LEN",
    "VERIFY_DATA_LEN",
    "extended_master_secret",
    "key_block",
    "master_secret",
    "p_hash",
    "prf",
    "verify_data",
]
