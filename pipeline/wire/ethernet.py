"""Ethernet II header, with an optional 802.1Q tag.

``EthernetRepr.parse(frame)`` returns the header and its payload (a memoryview, trailing padding
included: the IP layers trim by their own length fields). MAC addresses are 6-byte ``bytes``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pipeline.wire.drops import WireError

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
ETH_IPV6 = 0x86DD

HEADER_LEN = 14
VLAN_LEN = 4
BROADCAST = b"\xff" * 6

_HDR = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")


def mac_str(mac: bytes) -> str:
    """``02:00:00:00:0a:10`` for humans."""
    return ":".join(f"{b:02x}" for b in mac)


def is_multicast_mac(mac: bytes | memoryview) -> bool:
    """Group bit set (broadcast included)."""
    return bool(mac[0] & 1)


def ipv6_multicast_mac(ip: bytes) -> bytes:
    """RFC 2464 §7: 33:33 followed by the last four bytes of the IPv6 multicast address."""
    return b"\x33\x33" + ip[12:16]


@dataclass(frozen=True, slots=True)
class EthernetRepr:
    dst: bytes
    src: bytes
    ethertype: int
    vlan: int | None = None  # 802.1Q TCI (PCP, DEI, VID) when tagged

    @property
    def header_len(self) -> int:
        return HEADER_LEN + (VLAN_LEN if self.vlan is not None else 0)

    @classmethod
    def parse(cls, frame: bytes | bytearray | memoryview) -> tuple[EthernetRepr, memoryview]:
        view = memoryview(frame)
        if len(view) < HEADER_LEN:
            raise WireError("truncated", f"Ethernet frame of {len(view)} bytes")
        dst, src, ethertype = _HDR.unpack_from(view)
        vlan = None
        off = HEADER_LEN
        if ethertype == ETH_VLAN:
            if len(view) < HEADER_LEN + VLAN_LEN:
                raise WireError("truncated", "802.1Q tag cut short")
            vlan, ethertype = _TAG.unpack_from(view, HEADER_LEN)
            if ethertype == ETH_VLAN:
                raise WireError("unsupported", "stacked 802.1Q tags")
            off += VLAN_LEN
        if ethertype < 0x0600:
            raise WireError("unsupported", f"802.3 length field {ethertype}, not Ethernet II")
        return cls(dst, src, ethertype, vlan), view[off:]

    def emit(self, payload: bytes | bytearray | memoryview = b"") -> bytes:
        if self.vlan is None:
            return _HDR.pack(self.dst, self.src, self.ethertype) + payload
        return (
            _HDR.pack(self.dst, self.src, ETH_VLAN) + _TAG.pack(self.vlan, self.ethertype) + payload
        )


__all__ = [
    "BROADCAST",
    "ETH_ARP",
    "ETH_IPV4",
    "ETH_IPV6",
    "ETH_VLAN",
    "EthernetRepr",
    "ipv6_multicast_mac",
    "is_multicast_mac",
    "mac_str",
]
