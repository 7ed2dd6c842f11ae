"""ARP for Ethernet/IPv4 (RFC 826).

``ArpRepr.parse(payload)`` returns the message and what follows it (Ethernet padding); any other
hardware/protocol type is ``unsupported``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pipeline.wire.drops import WireError

OP_REQUEST = 1
OP_REPLY = 2
ARP_LEN = 28

_ARP = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(frozen=True, slots=True)
class ArpRepr:
    op: int
    sha: bytes  # sender hardware address
    spa: bytes  # sender protocol (IPv4) address
    tha: bytes
    tpa: bytes

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> tuple[ArpRepr, memoryview]:
        view = memoryview(data)
        return cls(*check_message(view)), view[ARP_LEN:]

    def emit(self) -> bytes:
        return _ARP.pack(1, 0x0800, 6, 4, self.op, self.sha, self.spa, self.tha, self.tpa)

    @property
    def is_gratuitous(self) -> bool:
        return self.spa == self.tpa


def check_message(view: memoryview, off: int = 0) -> tuple[int, bytes, bytes, bytes, bytes]:
    """The checks of ``ArpRepr.parse`` on the message at ``view[off:]``; (op, sha, spa, tha, tpa)."""
    have = len(view) - off
    if have < ARP_LEN:
        raise WireError("truncated", f"ARP message of {have} bytes")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(view, off)
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        raise WireError(
            "unsupported", f"ARP htype={htype} ptype={ptype:#x} hlen={hlen} plen={plen}"
        )
    if op not in (OP_REQUEST, OP_REPLY):
        raise WireError("unsupported", f"ARP operation {op}")
    return op, sha, spa, tha, tpa


_ARP_FRAME = struct.Struct("!6s6sHHHBBH6s4s6s4s")


def arp_frame(eth_dst: bytes, our_mac: bytes, op: int, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """A whole Ethernet/ARP frame from ``our_mac`` in one pack (replies, requests, announcements)."""
    return _ARP_FRAME.pack(eth_dst, our_mac, 0x0806, 1, 0x0800, 6, 4, op, our_mac, spa, tha, tpa)


__all__ = ["ARP_LEN", "OP_REPLY", "OP_REQUEST", "ArpRepr", "arp_frame", "check_message"]
