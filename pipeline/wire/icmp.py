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
DEFAULT_TTL = 64
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
    frame: bytes | memoryview, l3: int, hlen: int, total: int, our_mac: bytes
) -> bytes:
    """The Ethernet frame answering the echo request in ``frame``, made from the request's bytes.

    ``frame[l3:]`` is an IPv4 packet already validated by ``ipv4.check_header`` (``hlen``,
    ``total``) and addressed to us. Ethernet and IP addresses are swapped, TTL set to 64, the ICMP
    type set to echo reply, and both checksums patched (RFC 1624); IP options are not echoed.
    Raises ``WireError`` unless the ICMP message is an echo request with a valid checksum.
    """
    start = l3 + hlen
    end = l3 + total
    n = end - start
    if n < HEADER_LEN:
        raise WireError("truncated", f"ICMP message of {n} bytes")
    if frame[start] != ECHO_REQUEST:
        raise WireError("unsupported", f"ICMP type {frame[start]}")
    if checksum(frame[start:end]) != 0:
        raise WireError("bad_checksum", "ICMP checksum")
    out = bytearray(34 + n)
    out[0:6] = frame[6:12]
    out[6:12] = our_mac
    out[12:14] = _ETH_IPV4
    out[34:] = frame[start:end]
    out[14:34] = frame[l3 : l3 + 20]
    out[26:30], out[30:34] = out[30:34], out[26:30]  # swapping leaves the sum unchanged
    old_ttl_proto = (out[22] << 8) | out[23]
    out[22] = DEFAULT_TTL
    csum = (out[24] << 8) | out[25]
    if hlen != 20:
        out[14] = 0x45
        out[16:18] = (20 + n).to_bytes(2, "big")
        out[24:26] = b"\x00\x00"
        csum = checksum(memoryview(out)[14:34])
    else:
        csum = patch_checksum(csum, old_ttl_proto, (DEFAULT_TTL << 8) | out[23])
    out[24] = csum >> 8
    out[25] = csum & 0xFF
    icsum = patch_checksum((out[36] << 8) | out[37], ECHO_REQUEST << 8 | out[35], out[35])
    out[34] = ECHO_REPLY
    out[36] = icsum >> 8
    out[37] = icsum & 0xFF
    return bytes(out)


__all__ = ["ECHO_REPLY", "ECHO_REQUEST", "IcmpEchoRepr", "echo_reply_v4", "patch_checksum"]
