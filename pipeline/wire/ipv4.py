"""IPv4 header (RFC 791).

``Ipv4Repr.parse(packet)`` checks version, header length, header checksum and total length, skips
options, reports fragments (MF set or offset non-zero) as ``fragment``, and returns the header and
exactly ``total_length - header_len`` payload bytes (Ethernet padding trimmed). ``emit(payload)``
builds a 20-byte header (no options) with its checksum.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from pipeline.errors import ApiError
from pipeline.wire.checksum import sums_to_ones
from pipeline.wire.drops import WireError

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

HEADER_LEN = 20
FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF
DEFAULT_TTL = 64

_HDR = struct.Struct("!BBHHHBBH4s4s")


def ipv4_str(addr: bytes) -> str:
    return str(ipaddress.IPv4Address(addr))


@dataclass(frozen=True, slots=True)
class Ipv4Repr:
    src: bytes
    dst: bytes
    protocol: int
    payload_len: int
    ttl: int = DEFAULT_TTL
    ident: int = 0
    dont_fragment: bool = True
    tos: int = 0
    header_len: int = HEADER_LEN  # as received (options included); emit always writes 20

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> tuple[Ipv4Repr, memoryview]:
        view = memoryview(data)
        hlen, total, tos, ident, frag, ttl, proto, src, dst = check_header(view)
        repr_ = cls(src, dst, proto, total - hlen, ttl, ident, bool(frag & FLAG_DF), tos, hlen)
        return repr_, view[hlen:total]

    def emit(self, payload: bytes | bytearray | memoryview = b"") -> bytes:
        if len(payload) != self.payload_len:
            raise ApiError(f"payload of {len(payload)} bytes, header says {self.payload_len}")
        header = build_header(
            self.src, self.dst, self.protocol, self.payload_len, self.ident, self.ttl, self.tos,
            self.dont_fragment,
        )  # fmt: skip
        return header + payload


def build_header(
    src: bytes,
    dst: bytes,
    protocol: int,
    payload_len: int,
    ident: int,
    ttl: int = DEFAULT_TTL,
    tos: int = 0,
    dont_fragment: bool = True,
) -> bytes:
    """A 20-byte IPv4 header with its checksum (``Ipv4Repr.emit`` without the object)."""
    total = HEADER_LEN + payload_len
    if total > 0xFFFF:
        raise ApiError(f"IPv4 packet of {total} bytes")
    flags = FLAG_DF if dont_fragment else 0
    # checksum(header) without packing it first (one call per segment sent): a 16-bit field
    # adds its value, an address its integer (hi + lo = the integer mod 0xFFFF, RFC 1071 as
    # arithmetic); the header is never all zeros, so a residue of 0 stands for 0xFFFF
    s = (0x4500 | tos) + total + ident + flags + (ttl << 8 | protocol)
    s = (s + int.from_bytes(src, "big") + int.from_bytes(dst, "big")) % 0xFFFF or 0xFFFF
    return _HDR.pack(0x45, tos, total, ident, flags, ttl, protocol, ~s & 0xFFFF, src, dst)


def check_header(
    view: bytes | bytearray | memoryview, off: int = 0
) -> tuple[int, int, int, int, int, int, int, bytes, bytes]:
    """Every check of ``Ipv4Repr.parse`` on the packet at ``view[off:]``, without building it.

    Returns (header_len, total_length, tos, ident, flags_fragment, ttl, protocol, src, dst);
    the hot ICMP path uses it to answer from the request's bytes.
    """
    have = len(view) - off
    if have < HEADER_LEN:
        raise WireError("truncated", f"IPv4 packet of {have} bytes")
    vihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = _HDR.unpack_from(view, off)
    if vihl >> 4 != 4:
        raise WireError("bad_version", f"IP version {vihl >> 4} in an IPv4 frame")
    hlen = (vihl & 0x0F) * 4
    if hlen < HEADER_LEN:
        raise WireError("bad_length", f"IPv4 header length {hlen}")
    if hlen > have:
        raise WireError("truncated", f"IPv4 header of {hlen} bytes, have {have}")
    if total < hlen:
        raise WireError("bad_length", f"IPv4 total length {total} below header length {hlen}")
    if total > have:
        raise WireError("truncated", f"IPv4 total length {total}, have {have}")
    if not sums_to_ones(view[off : off + hlen]):
        raise WireError("bad_checksum", "IPv4 header checksum")
    if frag & (FLAG_MF | OFFSET_MASK):
        raise WireError("fragment", f"IPv4 fragment (flags/offset {frag:#06x})")
    return hlen, total, tos, ident, frag, ttl, proto, src, dst


def is_unicast_v4(addr: bytes | memoryview) -> bool:
    """Not 0.0.0.0/8, not multicast/reserved (224/3), not limited broadcast."""
    return 0 < addr[0] < 224


__all__ = [
    "DEFAULT_TTL",
    "PROTO_ICMP",
    "PROTO_TCP",
    "PROTO_UDP",
    "Ipv4Repr",
    "build_header",
    "check_header",
    "ipv4_str",
    "is_unicast_v4",
]
