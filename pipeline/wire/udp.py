"""UDP header (RFC 768; RFC 8200 §8.1 for the mandatory IPv6 checksum).

``UdpRepr.parse(datagram, src, dst)`` checks the length field against the data (trailing bytes
beyond it are dropped) and the checksum over the pseudo-header (a zero checksum means "none" over
IPv4 and is invalid over IPv6). ``emit(src, dst, payload)`` computes the checksum.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pipeline.wire.checksum import checksum, pseudo_header_sum
from pipeline.wire.drops import WireError

PROTO_UDP = 17
HEADER_LEN = 8

_HDR = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class UdpRepr:
    src_port: int
    dst_port: int

    @classmethod
    def parse(
        cls, data: bytes | bytearray | memoryview, src: bytes, dst: bytes
    ) -> tuple[UdpRepr, memoryview]:
        view = memoryview(data)
        if len(view) < HEADER_LEN:
            raise WireError("truncated", f"UDP datagram of {len(view)} bytes")
        sport, dport, length, csum = _HDR.unpack_from(view)
        if length < HEADER_LEN:
            raise WireError("bad_length", f"UDP length {length}")
        if length > len(view):
            raise WireError("truncated", f"UDP length {length}, have {len(view)}")
        view = view[:length]
        if csum == 0:
            if len(src) == 16:
                raise WireError("bad_checksum", "zero UDP checksum over IPv6")
        elif checksum(view, pseudo_header_sum(src, dst, PROTO_UDP, length)) != 0:
            raise WireError("bad_checksum", "UDP checksum")
        return cls(sport, dport), view[HEADER_LEN:]

    def emit(self, src: bytes, dst: bytes, payload: bytes | bytearray | memoryview = b"") -> bytes:
        length = HEADER_LEN + len(payload)
        msg = bytearray(_HDR.pack(self.src_port, self.dst_port, length, 0))
        msg += payload
        csum = checksum(msg, pseudo_header_sum(src, dst, PROTO_UDP, length)) or 0xFFFF
        msg[6:8] = csum.to_bytes(2, "big")
        return bytes(msg)


__all__ = ["UdpRepr"]
