"""ICMPv4 echo request/reply (RFC 792).

``IcmpEchoRepr.parse(message)`` verifies the checksum and returns the header fields and the echo
data; other ICMP types are ``unsupported``. The hot path, :func:`echo_reply_v4`, answers a
validated request by copying the request's bytes and patching type and checksum (RFC 1624
incremental update) instead of building objects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pipeline.wire.checksum import checksum
from pipeline.wire.drops import WireError

ECHO_REPLY = 0
ECHO_REQUEST = 8
HEADER_LEN = 8

_HDR = struct.Struct("!BBHHH")
_IP_ICMP = struct.Struct("!BBHHHBBH4s4s")
_ETH_IPV4 = b"\x08\x00"


def patch_checksum(csum: int, old_word: int, new_word: int) -> int:
    """RFC 1624 eqn. 3: the checksum after one 16-bit word changed from ``old_word`` to ``new_word``."""
    s = (~csum & 0xFFFF) + (~old_word & 0xFFFF) + new_word
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    # 0x0000 would be wrong when the data is all zeros (its sum is +0); 0xFFFF is always right.
    return (~s & 0xFFFF) or 0xFFFF


@dataclass(frozen=True, slots=True)
class IcmpEchoRepr:
    type: int  # ECHO_REQUEST or ECHO_REPLY
    ident: int
    seq: int
    code: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> tuple[IcmpEchoRepr, memoryview]:
        view = memoryview(data)
        if len(view) < HEADER_LEN:
            raise WireError("truncated", f"ICMP message of {len(view)} bytes")
        type_, code, _csum, ident, seq = _HDR.unpack_from(view)
        if type_ not in (ECHO_REQUEST, ECHO_REPLY):
            raise WireError("unsupported", f"ICMP type {type_}")
        if checksum(view) != 0:
            raise WireError("bad_checksum", "ICMP checksum")
        return cls(type_, ident, seq, code), view[HEADER_LEN:]

    def emit(self, data: bytes | bytearray | memoryview = b"") -> bytes:
        msg = bytearray(_HDR.pack(self.type, self.code, 0, self.ident, self.seq))
        msg += data
        msg[2:4] = checksum(msg).to_bytes(2, "big")
        return bytes(msg)


def echo_reply_v4(
    icmp: memoryview, src: bytes, dst: bytes, peer_mac: bytes, our_mac: bytes, ip_ident: int
) -> bytes:
    """The Ethernet frame answering the echo request ``icmp`` sent from ``src`` to ``dst``.

    ``icmp`` is the request's ICMP message (IP payload, already trimmed to the IP total length).
    Raises ``WireError`` unless it is a well-formed echo request with a valid checksum.
    """
    n = len(icmp)
    if n < HEADER_LEN:
        raise WireError("truncated", f"ICMP message of {n} bytes")
    if icmp[0] != ECHO_REQUEST:
        raise WireError("unsupported", f"ICMP type {icmp[0]}")
    if checksum(icmp) != 0:
        raise WireError("bad_checksum", "ICMP checksum")
    out = bytearray(34 + n)
    out[0:6] = peer_mac
    out[6:12] = our_mac
    out[12:14] = _ETH_IPV4
    _IP_ICMP.pack_into(out, 14, 0x45, 0, 20 + n, ip_ident, 0x4000, 64, 1, 0, dst, src)
    out[24:26] = checksum(memoryview(out)[14:34]).to_bytes(2, "big")
    out[34:] = icmp
    old_word = (icmp[0] << 8) | icmp[1]
    out[34] = ECHO_REPLY
    csum = patch_checksum((icmp[2] << 8) | icmp[3], old_word, icmp[1])
    out[36] = csum >> 8
    out[37] = csum & 0xFF
    return bytes(out)


__all__ = ["ECHO_REPLY", "ECHO_REQUEST", "IcmpEchoRepr", "echo_reply_v4", "patch_checksum"]
