"""ICMPv4 echo request/reply (RFC 792).

``IcmpEchoRepr.parse(message)`` verifies the checksum and returns the header fields and the echo
data; other ICMP types are ``unsupported``. The hot path, :func:`echo_reply_v4`, answers a
validated request by copying the request's bytes and patching type and checksum (RFC 1624
incremental update) instead of building objects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pipeline.wire.checksum import checksum, sums_to_ones
from pipeline.wire.drops import WireError

ECHO_REPLY = 0
ECHO_REQUEST = 8
HEADER_LEN = 8

_HDR = struct.Struct("!BBHHH")
DEFAULT_TTL = 64
HEADER_LEN_IP = 20

_ICMP_HEAD = struct.Struct("!BBH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_REPLY_HEAD = struct.Struct("!6s6sHBBHHHBBH4s4sBBH")  # Ethernet, IPv4, ICMP type/code/sum


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
    type_, code, icsum = _ICMP_HEAD.unpack_from(frame, start)
    if type_ != ECHO_REQUEST:
        raise WireError("unsupported", f"ICMP type {type_}")
    if not sums_to_ones(frame[start:end]):
        raise WireError("bad_checksum", "ICMP checksum")
    _vihl, tos, _total, ident, frag, ttl, proto, ipcsum, src, dst = _IP.unpack_from(frame, l3)
    if hlen == HEADER_LEN_IP:  # same header, addresses swapped (sum unchanged), new TTL
        if ttl != DEFAULT_TTL:
            ipcsum = patch_checksum(ipcsum, (ttl << 8) | proto, (DEFAULT_TTL << 8) | proto)
    else:  # options are not echoed: a fresh 20-byte header
        ipcsum = checksum(_IP.pack(0x45, tos, 20 + n, ident, frag, DEFAULT_TTL, proto, 0, dst, src))
    # type 8 -> 0 lowers the first word by 0x0800: RFC 1624 eqn. 3 inlined (patch_checksum)
    s = (~icsum & 0xFFFF) + (~((ECHO_REQUEST << 8) | code) & 0xFFFF) + code
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    icsum = (~s & 0xFFFF) or 0xFFFF
    head = _REPLY_HEAD.pack(
        bytes(frame[6:12]), our_mac, 0x0800,
        0x45, tos, 20 + n, ident, frag, DEFAULT_TTL, proto, ipcsum, dst, src,
        ECHO_REPLY, code, icsum,
    )  # fmt: skip
    return head + frame[start + 4 : end]


__all__ = ["ECHO_REPLY", "ECHO_REQUEST", "IcmpEchoRepr", "echo_reply_v4", "patch_checksum"]
