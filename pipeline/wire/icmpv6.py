"""ICMPv6 (RFC 4443) echo and Neighbor Discovery NS/NA (RFC 4861) with link-layer address options.

The checksum covers the IPv6 pseudo-header, so ``parse(message, src, dst)`` takes the addresses
and verifies it; ``emit(src, dst)`` computes it. Other ICMPv6 types are ``unsupported``.
:func:`echo_reply_v6` is the hot path: copy the request, patch type and checksum.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pipeline.wire.checksum import checksum, pseudo_header_sum
from pipeline.wire.drops import WireError
from pipeline.wire.icmp import patch_checksum

ECHO_REQUEST = 128
ECHO_REPLY = 129
NEIGHBOR_SOLICIT = 135
NEIGHBOR_ADVERT = 136
NH_ICMPV6 = 58

OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2

FLAG_ROUTER = 0x80000000
FLAG_SOLICITED = 0x40000000
FLAG_OVERRIDE = 0x20000000

ND_HOP_LIMIT = 255
ECHO_HEADER_LEN = 8
ND_HEADER_LEN = 24
MAX_ND_OPTIONS = 16  # bound the option walk

_ECHO = struct.Struct("!BBHHH")
_ND = struct.Struct("!BBHI16s")


def verify_checksum(message: memoryview, src: bytes, dst: bytes) -> None:
    if checksum(message, pseudo_header_sum(src, dst, NH_ICMPV6, len(message))) != 0:
        raise WireError("bad_checksum", "ICMPv6 checksum")


def _with_checksum(msg: bytearray, src: bytes, dst: bytes) -> bytes:
    msg[2:4] = checksum(msg, pseudo_header_sum(src, dst, NH_ICMPV6, len(msg))).to_bytes(2, "big")
    return bytes(msg)


def icmpv6_type(message: memoryview) -> int:
    if len(message) < 4:
        raise WireError("truncated", f"ICMPv6 message of {len(message)} bytes")
    return message[0]


@dataclass(frozen=True, slots=True)
class Icmpv6EchoRepr:
    type: int  # ECHO_REQUEST or ECHO_REPLY
    ident: int
    seq: int
    code: int = 0

    @classmethod
    def parse(
        cls, data: bytes | bytearray | memoryview, src: bytes, dst: bytes
    ) -> tuple[Icmpv6EchoRepr, memoryview]:
        view = memoryview(data)
        if len(view) < ECHO_HEADER_LEN:
            raise WireError("truncated", f"ICMPv6 echo of {len(view)} bytes")
        type_, code, _csum, ident, seq = _ECHO.unpack_from(view)
        if type_ not in (ECHO_REQUEST, ECHO_REPLY):
            raise WireError("unsupported", f"ICMPv6 type {type_}")
        verify_checksum(view, src, dst)
        return cls(type_, ident, seq, code), view[ECHO_HEADER_LEN:]

    def emit(self, src: bytes, dst: bytes, data: bytes | bytearray | memoryview = b"") -> bytes:
        msg = bytearray(_ECHO.pack(self.type, self.code, 0, self.ident, self.seq))
        msg += data
        return _with_checksum(msg, src, dst)


@dataclass(frozen=True, slots=True)
class NdiscRepr:
    """A Neighbor Solicitation or Advertisement. ``lladdr`` is the source link-layer address
    option of an NS, the target link-layer address option of an NA (None when absent)."""

    type: int  # NEIGHBOR_SOLICIT or NEIGHBOR_ADVERT
    target: bytes
    lladdr: bytes | None = None
    router: bool = False
    solicited: bool = False
    override: bool = False

    @classmethod
    def parse(
        cls, data: bytes | bytearray | memoryview, src: bytes, dst: bytes
    ) -> tuple[NdiscRepr, memoryview]:
        view = memoryview(data)
        if len(view) < ND_HEADER_LEN:
            raise WireError("truncated", f"ND message of {len(view)} bytes")
        type_, code, _csum, flags, target = _ND.unpack_from(view)
        if type_ not in (NEIGHBOR_SOLICIT, NEIGHBOR_ADVERT):
            raise WireError("unsupported", f"ICMPv6 type {type_}")
        if code != 0:
            raise WireError("malformed", f"ND code {code}")
        verify_checksum(view, src, dst)
        if target[0] == 0xFF:
            raise WireError("malformed", "ND target is a multicast address")
        wanted = OPT_SOURCE_LLADDR if type_ == NEIGHBOR_SOLICIT else OPT_TARGET_LLADDR
        lladdr = None
        off = ND_HEADER_LEN
        for _ in range(MAX_ND_OPTIONS):
            if off >= len(view):
                break
            if off + 2 > len(view):
                raise WireError("truncated", "ND option cut short")
            kind, length = view[off], view[off + 1] * 8
            if length == 0:
                raise WireError("malformed", "ND option of length 0")
            if off + length > len(view):
                raise WireError("truncated", "ND option longer than the message")
            if kind == wanted and length == 8:
                lladdr = bytes(view[off + 2 : off + 8])
            off += length
        else:
            if off < len(view):
                raise WireError("unsupported", f"more than {MAX_ND_OPTIONS} ND options")
        is_na = type_ == NEIGHBOR_ADVERT
        repr_ = cls(
            type_,
            target,
            lladdr,
            router=is_na and bool(flags & FLAG_ROUTER),
            solicited=is_na and bool(flags & FLAG_SOLICITED),
            override=is_na and bool(flags & FLAG_OVERRIDE),
        )
        return repr_, view[off:]

    def emit(self, src: bytes, dst: bytes) -> bytes:
        flags = (
            (FLAG_ROUTER if self.router else 0)
            | (FLAG_SOLICITED if self.solicited else 0)
            | (FLAG_OVERRIDE if self.override else 0)
        )
        msg = bytearray(_ND.pack(self.type, 0, 0, flags, self.target))
        if self.lladdr is not None:
            kind = OPT_SOURCE_LLADDR if self.type == NEIGHBOR_SOLICIT else OPT_TARGET_LLADDR
            msg += bytes((kind, 1)) + self.lladdr
        return _with_checksum(msg, src, dst)


def echo_reply_v6(message: memoryview, src: bytes, dst: bytes) -> bytes:
    """The ICMPv6 echo reply (message only) answering request ``message`` from ``src`` to ``dst``.

    Swapping the addresses leaves the pseudo-header sum unchanged, so only the type word is
    patched. Raises ``WireError`` unless ``message`` is an echo request with a valid checksum.
    """
    n = len(message)
    if n < ECHO_HEADER_LEN:
        raise WireError("truncated", f"ICMPv6 echo of {n} bytes")
    if message[0] != ECHO_REQUEST:
        raise WireError("unsupported", f"ICMPv6 type {message[0]}")
    verify_checksum(message, src, dst)
    out = bytearray(message)
    old_word = (out[0] << 8) | out[1]
    out[0] = ECHO_REPLY
    csum = patch_checksum((out[2] << 8) | out[3], old_word, (ECHO_REPLY << 8) | out[1])
    out[2] = csum >> 8
    out[3] = csum & 0xFF
    return bytes(out)


_REPLY6_HEAD = struct.Struct("!6s6sHIHBB16s16sBBH")  # Ethernet, IPv6, ICMPv6 type/code/sum
_IP6 = struct.Struct("!IHBB16s16s")


def echo_reply_frame_v6(frame: bytes | memoryview, l3: int, plen: int, our_mac: bytes) -> bytes:
    """The Ethernet frame answering the echo request in ``frame``, made from the request's bytes.

    ``frame[l3:]`` is an IPv6 packet whose fixed header passed ``ipv6.check_fixed_header``
    (payload length ``plen``), with next header ICMPv6 and addressed to us. Addresses are swapped
    (the pseudo-header sum is unchanged), hop limit set to 64, the type word patched.
    """
    start = l3 + 40
    end = start + plen
    if plen < ECHO_HEADER_LEN:
        raise WireError("truncated", f"ICMPv6 echo of {plen} bytes")
    type_, code, csum, _ident, _seq = _ECHO.unpack_from(frame, start)
    if type_ != ECHO_REQUEST:
        raise WireError("unsupported", f"ICMPv6 type {type_}")
    vtf, _plen, nh, _hlim, src, dst = _IP6.unpack_from(frame, l3)
    verify_checksum(memoryview(frame)[start:end], src, dst)
    csum = patch_checksum(csum, (ECHO_REQUEST << 8) | code, (ECHO_REPLY << 8) | code)
    head = _REPLY6_HEAD.pack(
        bytes(frame[6:12]), our_mac, 0x86DD,
        vtf, plen, nh, 64, dst, src,
        ECHO_REPLY, code, csum,
    )  # fmt: skip
    return head + frame[start + 4 : end]


__all__ = [
    "ECHO_REPLY",
    "ECHO_REQUEST",
    "NEIGHBOR_ADVERT",
    "NEIGHBOR_SOLICIT",
    "ND_HOP_LIMIT",
    "Icmpv6EchoRepr",
    "NdiscRepr",
    "echo_reply_frame_v6",
    "echo_reply_v6",
    "icmpv6_type",
]
