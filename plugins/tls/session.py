"""The state a resumed TLS 1.2 handshake needs, and its compact fixed-layout encoding.

Both resumption mechanisms carry exactly this: the stateful cache stores ``encode()`` bytes under
the session ID (``store.py``, whose memory per session depends on this size), the stateless
ticket seals them (``tickets.py``). Layout, big-endian, 59 bytes plus the two names::

    0   2   version
    2   2   cipher suite
    4   1   flags: bit 0 extended master secret; any other bit set never decodes
    5   4   created: whole wall-clock seconds (the fraction is dropped)
    9   48  master secret
    57  1+n SNI: length (0 = none), UTF-8
    ..  1+m ALPN: length (0 = none), latin-1 (ALPN ids are opaque bytes on the wire)

``created`` is informational: cache ages come from the store's own put time and ticket ages
from the ticket's issue time, so nothing in tapnf reads it back and seconds are plenty.
``encode`` never raises: a state the layout cannot hold (an empty, over-255-byte or unencodable
name, a ``created`` that is negative, NaN or past 2106, a master secret of the wrong size, a
version or suite past 16 bits) encodes as ``UNRESUMABLE``, a marker that never decodes, so that
session simply cannot be resumed (the msgpack encoding before this one refused most of them at
decode). ``decode`` is given bytes an attacker may have influenced (a cache shared between
instances, a ticket whose AEAD tag checked out but whose plaintext came from an older release —
the msgpack states of releases before this layout are refused, so their tickets fall back to a
full handshake), so it validates every field and raises only ``DecodeError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pipeline.errors import DecodeError

#: A TLS 1.2 master secret is always 48 bytes (RFC 5246 §8.1).
MASTER_SECRET_LEN = 48
#: Bound on the encoded state (the fixed part and two names of at most 255 bytes fit easily).
MAX_ENCODED_LEN = 1024

_HEAD = struct.Struct(">HHBI48sB")  # version, suite, flags, created, master secret, SNI length
_MIN_LEN = _HEAD.size + 1  # no SNI, no ALPN
_EMS = 0x01
_MAX_CREATED = 0xFFFFFFFF
_MAX_NAME = 255
_LEN = [bytes((i,)) for i in range(_MAX_NAME + 1)]
#: What ``encode`` returns for a state the layout cannot hold: a reserved flag, never decodes.
UNRESUMABLE = _HEAD.pack(0, 0, 0x80, 0, bytes(MASTER_SECRET_LEN), 0) + b"\x00"


@dataclass(slots=True)
class SessionState:
    """What a resumed handshake needs. ``created`` is wall-clock seconds at the full handshake.

    Read-only by convention (one is built per resumed handshake; a frozen dataclass costs one
    ``object.__setattr__`` per field)."""

    version: int
    cipher_suite: int
    master_secret: bytes = field(repr=False)
    ems: bool
    sni: str | None
    alpn: str | None
    created: float

    def encode(self) -> bytes:
        """The layout above (``UNRESUMABLE`` for a state it cannot hold); never raises."""
        sni, alpn, created, secret = self.sni, self.alpn, self.created, self.master_secret
        try:
            s = b"" if sni is None else sni.encode()
            a = b"" if alpn is None else alpn.encode("latin-1")
            if (
                not 0 <= created <= _MAX_CREATED  # also NaN
                or len(secret) != MASTER_SECRET_LEN
                or (sni is not None and not 0 < len(s) <= _MAX_NAME)
                or (alpn is not None and not 0 < len(a) <= _MAX_NAME)
            ):
                return UNRESUMABLE
            head = _HEAD.pack(
                self.version,
                self.cipher_suite,
                _EMS if self.ems else 0,
                int(created),
                secret,
                len(s),
            )
        except (ValueError, TypeError, struct.error):  # UnicodeEncodeError is a ValueError
            return UNRESUMABLE
        return head + s + _LEN[len(a)] + a

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> SessionState:
        """Parse ``encode()`` output; anything else raises ``DecodeError``, nothing else."""
        n = len(data)
        if not _MIN_LEN <= n <= MAX_ENCODED_LEN:
            raise DecodeError(f"session state of {n} bytes")
        data = bytes(data)
        version, suite, flags, created, secret, alpn_at = _HEAD.unpack_from(data)
        if flags > _EMS:
            raise DecodeError("session state: bad flags")
        alpn_at += _HEAD.size
        if alpn_at >= n or alpn_at + 1 + data[alpn_at] != n:
            raise DecodeError("session state: bad name lengths")
        sni: str | None = None
        if alpn_at > _HEAD.size:
            try:
                sni = data[_HEAD.size : alpn_at].decode()
            except UnicodeDecodeError:
                raise DecodeError("session state: sni is not UTF-8") from None
        alpn = data[alpn_at + 1 :].decode("latin-1") if alpn_at + 1 < n else None
        return cls(version, suite, secret, flags == _EMS, sni, alpn, float(created))


__all__ = ["MASTER_SECRET_LEN", "MAX_ENCODED_LEN", "SessionState", "UNRESUMABLE"]
