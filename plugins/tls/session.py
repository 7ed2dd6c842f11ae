"""The state a resumed TLS 1.2 handshake needs, and its compact msgpack encoding.

Both resumption mechanisms carry exactly this: the stateful cache stores ``encode()`` bytes under
the session ID (``store.py``), the stateless ticket seals them (``tickets.py``). The encoding is a
msgpack array ``[version, cipher_suite, master_secret, ems, sni, alpn, created]`` — no field names,
so a session costs about 70 bytes (48 of them the master secret). ``decode`` is given bytes an
attacker may have influenced (a cache shared between instances, a ticket whose AEAD tag checked out
but whose plaintext came from an older release), so it validates every field and raises only
``DecodeError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from pipeline.errors import DecodeError

#: A TLS 1.2 master secret is always 48 bytes (RFC 5246 §8.1).
MASTER_SECRET_LEN = 48
#: Bound on the encoded state (hostnames are at most 255 bytes, ALPN ids 255).
MAX_ENCODED_LEN = 1024


# One packer for every encode (``msgpack.packb`` builds a Packer per call); autoreset: each
# ``pack`` returns just that object's bytes. The engine is single-threaded per process.
_PACKER = msgpack.Packer(use_bin_type=True)


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a resumed handshake needs. ``created`` is wall-clock seconds at the full handshake."""

    version: int
    cipher_suite: int
    master_secret: bytes = field(repr=False)
    ems: bool
    sni: str | None
    alpn: str | None
    created: float

    def encode(self) -> bytes:
        out: bytes = _PACKER.pack(
            [
                self.version,
                self.cipher_suite,
                self.master_secret,
                self.ems,
                self.sni,
                self.alpn,
                self.created,
            ]
        )
        return out

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> SessionState:
        """Parse ``encode()`` output; anything else raises ``DecodeError``, nothing else."""
        if len(data) > MAX_ENCODED_LEN:
            raise DecodeError(f"session state too long ({len(data)} bytes)")
        try:
            obj: Any = msgpack.unpackb(bytes(data), raw=False, use_list=True, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise DecodeError(f"session state is not msgpack: {type(exc).__name__}") from None
        if not isinstance(obj, list) or len(obj) != 7:
            raise DecodeError("session state must be a 7-element array")
        version, suite, secret, ems, sni, alpn, created = obj
        if type(version) is not int or not 0 <= version <= 0xFFFF:
            raise DecodeError("session state: bad version")
        if type(suite) is not int or not 0 <= suite <= 0xFFFF:
            raise DecodeError("session state: bad cipher suite")
        if not isinstance(secret, bytes) or len(secret) != MASTER_SECRET_LEN:
            raise DecodeError("session state: bad master secret")
        if type(ems) is not bool:
            raise DecodeError("session state: bad ems flag")
        if sni is not None and (not isinstance(sni, str) or not 0 < len(sni) <= 255):
            raise DecodeError("session state: bad sni")
        if alpn is not None and (not isinstance(alpn, str) or not 0 < len(alpn) <= 255):
            raise DecodeError("session state: bad alpn")
        if type(created) not in (int, float) or created != created or created < 0:
            raise DecodeError("session state: bad creation time")
        return cls(version, suite, secret, ems, sni, alpn, float(created))


__all__ = ["MASTER_SECRET_LEN", "MAX_ENCODED_LEN", "SessionState"]
