"""IPv6 header (RFC 8200) and its extension-header chain.

``Ipv6Repr.parse(packet)`` walks hop-by-hop, routing and destination-options headers (skipped),
reports a fragment header as ``fragment`` and any other non-upper-layer header as
``unsupported``; it returns the header with ``next_header`` set to the upper-layer protocol and
exactly that protocol's bytes (Ethernet padding trimmed). ``emit(payload)`` writes a 40-byte header
without extension headers.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from pipeline.errors import ApiError
from pipeline.wire.drops import WireError

HEADER_LEN = 40
DEFAULT_HOP_LIMIT = 64

NH_HOP_BY_HOP = 0
NH_TCP = 6
NH_UDP = 17
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_ICMPV6 = 58
NH_NONE = 59
NH_DEST_OPTS = 60

UPPER_LAYER = frozenset((NH_TCP, NH_UDP, NH_ICMPV6))
SKIPPED = frozenset((NH_HOP_BY_HOP, NH_ROUTING, NH_DEST_OPTS))
MAX_EXTENSION_HEADERS = 8  # bound the walk; a longer chain is ``unsupported``

_HDR = struct.Struct("!IHBB16s16s")

ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
UNSPECIFIED = bytes(16)
_SOLICITED_PREFIX = bytes.fromhex("ff0200000000000000000001ff")


def ipv6_str(addr: bytes) -> str:
    return str(ipaddress.IPv6Address(addr))


def solicited_node(addr: bytes) -> bytes:
    """RFC 4291 §2.7.1: ff02::1:ffXX:XXXX from the last 24 bits of ``addr``."""
    return _SOLICITED_PREFIX + addr[13:16]


def is_multicast_v6(addr: bytes | memoryview) -> bool:
    return addr[0] == 0xFF


def check_fixed_header(view: memoryview, off: int = 0) -> tuple[int, int, int, int, bytes, bytes]:
    """The checks of the 40-byte header at ``view[off:]``: version, payload length within the data.

    Returns (version/class/flow word, payload length, next header, hop limit, src, dst).
    """
    have = len(view) - off
    if have < HEADER_LEN:
        raise WireError("truncated", f"IPv6 packet of {have} bytes")
    vtf, plen, nh, hlim, src, dst = _HDR.unpack_from(view, off)
    if vtf >> 28 != 6:
        raise WireError("bad_version", f"IP version {vtf >> 28} in an IPv6 frame")
    if HEADER_LEN + plen > have:
        raise WireError("truncated", f"IPv6 payload length {plen}, have {have - HEADER_LEN}")
    return vtf, plen, nh, hlim, src, dst


@dataclass(frozen=True, slots=True)
class Ipv6Repr:
    src: bytes
    dst: bytes
    next_header: int  # upper-layer protocol (after extension headers)
    payload_len: int  # upper-layer bytes
    hop_limit: int = DEFAULT_HOP_LIMIT
    traffic_class: int = 0
    flow_label: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> tuple[Ipv6Repr, memoryview]:
        view = memoryview(data)
        vtf, plen, nh, hlim, src, dst = check_fixed_header(view)
        end = HEADER_LEN + plen
        off = HEADER_LEN
        for _ in range(MAX_EXTENSION_HEADERS + 1):
            if nh in UPPER_LAYER:
                repr_ = cls(src, dst, nh, end - off, hlim, (vtf >> 20) & 0xFF, vtf & 0xFFFFF)
                return repr_, view[off:end]
            if nh == NH_FRAGMENT:
                raise WireError("fragment", "IPv6 fragment header")
            if nh not in SKIPPED:
                raise WireError("unsupported", f"IPv6 next header {nh}")
            if nh == NH_HOP_BY_HOP and off != HEADER_LEN:
                raise WireError("malformed", "hop-by-hop options not first")
            if off + 2 > end:
                raise WireError("truncated", "IPv6 extension header cut short")
            nh, hdr_ext_len = view[off], view[off + 1]
            off += (hdr_ext_len + 1) * 8
            if off > end:
                raise WireError("truncated", "IPv6 extension header longer than the packet")
        raise WireError("unsupported", f"more than {MAX_EXTENSION_HEADERS} extension headers")

    def emit(self, payload: bytes | bytearray | memoryview = b"") -> bytes:
        if len(payload) != self.payload_len:
            raise ApiError(f"payload of {len(payload)} bytes, header says {self.payload_len}")
        vtf = (6 << 28) | (self.traffic_class << 20) | self.flow_label
        hdr = _HDR.pack(vtf, self.payload_len, self.next_header, self.hop_limit, self.src, self.dst)
        return hdr + payload


def build_header(
    src: bytes, dst: bytes, next_header: int, payload_len: int, hop_limit: int = DEFAULT_HOP_LIMIT
) -> bytes:
    """The 40-byte fixed header (``Ipv6Repr.emit`` without the object or the payload copy)."""
    return _HDR.pack(6 << 28, payload_len, next_header, hop_limit, src, dst)


__all__ = [
    "ALL_NODES",
    "DEFAULT_HOP_LIMIT",
    "NH_ICMPV6",
    "NH_TCP",
    "NH_UDP",
    "UNSPECIFIED",
    "Ipv6Repr",
    "build_header",
    "check_fixed_header",
    "ipv6_str",
    "is_multicast_v6",
    "solicited_node",
]
