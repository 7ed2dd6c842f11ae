"""SYN cookies and RFC 6528 initial sequence numbers, keyed from the injected rng.

A cookie is the ISN of a SYN-ACK for which no state is kept:
``t (5 bits, 64-second ticks) | MSS index (3 bits) | keyed hash (24 bits)`` over the four-tuple,
the client's ISN and ``t``. The ACK that completes the handshake returns ``cookie + 1``; a cookie
is valid for the current and the previous tick. Connections made from a cookie carry no window
scaling, SACK or timestamps (nothing was remembered).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Callable

from pipeline.tcp.seq import MASK

MSS_TABLE = (536, 1220, 1360, 1400, 1440, 1452, 1460, 8960)
TICK = 64.0


class IsnGenerator:
    """RFC 6528: ISN = M + F(4-tuple, secret), M a 4-microsecond clock."""

    def __init__(self, rng: Callable[[int], bytes]) -> None:
        self._key = rng(32)
        self._keyed = hashlib.blake2s(key=self._key, digest_size=4)  # copied per SYN

    def isn(self, src: bytes, sport: int, dst: bytes, dport: int, now: float) -> int:
        h = self._keyed.copy()
        h.update(src + dst + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
        return (int.from_bytes(h.digest(), "big") + int(now * 250_000)) & MASK


class SynCookies:
    def __init__(self, rng: Callable[[int], bytes]) -> None:
        self._key = rng(32)
        self._keyed = hashlib.blake2s(key=self._key, digest_size=3)  # copied per cookie

    def _hash(self, src: bytes, sport: int, dst: bytes, dport: int, client_isn: int, t: int) -> int:
        h = self._keyed.copy()
        h.update(
            src
            + dst
            + sport.to_bytes(2, "big")
            + dport.to_bytes(2, "big")
            + client_isn.to_bytes(4, "big")
            + bytes((t,))
        )
        return int.from_bytes(h.digest(), "big")

    @staticmethod
    def mss_index(mss: int) -> int:
        """The largest table entry not above the peer's MSS."""
        return max(bisect_right(MSS_TABLE, mss) - 1, 0)

    def make(
        self, src: bytes, sport: int, dst: bytes, dport: int, client_isn: int, mss: int, now: float
    ) -> int:
        t = int(now // TICK) & 0x1F
        idx = self.mss_index(mss)
        return (t << 27) | (idx << 24) | self._hash(src, sport, dst, dport, client_isn, t)

    def check(
        self,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        client_isn: int,
        cookie: int,
        now: float,
    ) -> int | None:
        """The MSS encoded in a valid ``cookie`` (from ``ack - 1``), else None."""
        t = (cookie >> 27) & 0x1F
        age = (int(now // TICK) - t) & 0x1F
        if age > 1:
            return None
        if self._hash(src, sport, dst, dport, client_isn, t) != cookie & 0xFFFFFF:
            return None
        return MSS_TABLE[(cookie >> 24) & 0x7]


__all__ = ["IsnGenerator", "MSS_TABLE", "SynCookies"]
