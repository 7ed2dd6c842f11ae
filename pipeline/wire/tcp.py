"""TCP header and options codec (RFC 9293, MSS, RFC 7323 window scale and timestamps, RFC 2018 SACK).

``TcpRepr.parse(segment)`` decodes a segment (the checksum is checked by the caller, who knows the
pseudo-header); ``TcpRepr.emit(src, dst)`` encodes one with its checksum. Unknown options are
skipped; malformed option lengths raise ``DecodeError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pipeline.errors import DecodeError
from pipeline.wire.checksum import checksum, pseudo_header_sum

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

PROTO_TCP = 6
HEADER_LEN = 20

OPT_END = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

MAX_WSCALE = 14

_HDR = struct.Struct("!HHIIBBHHH")
_TS = struct.Struct("!BBBBII")  # NOP NOP kind len tsval tsecr
_SACK_BLOCK = struct.Struct("!II")

SackBlocks = tuple[tuple[int, int], ...]


def flags_str(flags: int) -> str:
    """``"SA"`` style rendering for tests and debugging views."""
    return "".join(
        c for bit, c in zip((SYN, FIN, RST, PSH, ACK, URG), "SFRPAU", strict=True) if flags & bit
    )


@dataclass(frozen=True, slots=True)
class TcpRepr:
    """One TCP segment's fields. ``window`` is the raw 16-bit field (not scaled)."""

    src_port: int
    dst_port: int
    seq: int
    ack: int = 0
    flags: int = 0
    window: int = 0
    payload: bytes | memoryview = b""
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: SackBlocks = ()
    timestamp: tuple[int, int] | None = None  # (TSval, TSecr)
    urgent: int = 0
    extra_options: bytes = field(default=b"", repr=False)

    @property
    def seg_len(self) -> int:
        """Sequence space used: payload plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    # ---- decoding ------------------------------------------------------------------------
    @classmethod
    def parse(cls, segment: bytes | bytearray | memoryview) -> TcpRepr:
        view = memoryview(segment)
        if len(view) < HEADER_LEN:
            raise DecodeError(f"TCP segment of {len(view)} bytes is shorter than its header")
        sport, dport, seq, ack, off, flags, window, _csum, urgent = _HDR.unpack_from(view)
        hlen = (off >> 4) * 4
        if hlen < HEADER_LEN or hlen > len(view):
            raise DecodeError(f"TCP data offset {hlen} invalid for {len(view)} bytes")
        mss = wscale = None
        sack_ok = False
        sack: SackBlocks = ()
        ts = None
        if hlen > HEADER_LEN:
            mss, wscale, sack_ok, sack, ts = _parse_options(view[HEADER_LEN:hlen])
        return cls(
            sport,
            dport,
            seq,
            ack,
            flags | ((off & 0x01) << 8),
            window,
            view[hlen:],
            mss,
            wscale,
            sack_ok,
            sack,
            ts,
            urgent,
        )

    # ---- encoding ------------------------------------------------------------------------
    def options_bytes(self) -> bytes:
        out = bytearray()
        if self.mss is not None:
            out += struct.pack("!BBH", OPT_MSS, 4, self.mss)
        if self.wscale is not None:
            out += struct.pack("!BBBB", OPT_NOP, OPT_WSCALE, 3, self.wscale)
        if self.sack_permitted:
            out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2)
        if self.timestamp is not None:
            out += _TS.pack(OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10, *self.timestamp)
        if self.sack_blocks:
            out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(self.sack_blocks))
            for left, right in self.sack_blocks:
                out += _SACK_BLOCK.pack(left, right)
        out += self.extra_options
        while len(out) % 4:
            out.append(OPT_END)
        if len(out) > 40:
            raise DecodeError(f"{len(out)} bytes of TCP options exceed 40")
        return bytes(out)

    def header_len(self) -> int:
        return HEADER_LEN + len(self.options_bytes())

    def emit(self, src: bytes, dst: bytes, *, partial: bool = False) -> bytes:
        """The segment with its checksum over the IPv4/IPv6 pseudo-header of ``src``/``dst``.

        ``partial``: the checksum field holds only the pseudo-header sum, for a super-segment
        whose checksum the kernel computes (CHECKSUM_PARTIAL; see ``pipeline.wire.gso``).
        """
        opts = self.options_bytes() if self._has_options() else b""
        hlen = HEADER_LEN + len(opts)
        buf = bytearray(hlen + len(self.payload))
        _HDR.pack_into(
            buf,
            0,
            self.src_port,
            self.dst_port,
            self.seq & 0xFFFFFFFF,
            self.ack & 0xFFFFFFFF,
            (hlen // 4) << 4 | ((self.flags >> 8) & 1),
            self.flags & 0xFF,
            self.window,
            0,
            self.urgent,
        )
        buf[HEADER_LEN:hlen] = opts
        buf[hlen:] = self.payload
        psum = pseudo_header_sum(src, dst, PROTO_TCP, len(buf))
        csum = psum if partial else checksum(buf, psum)
        buf[16] = csum >> 8
        buf[17] = csum & 0xFF
        return bytes(buf)

    def _has_options(self) -> bool:
        return (
            self.mss is not None
            or self.wscale is not None
            or self.sack_permitted
            or self.timestamp is not None
            or bool(self.sack_blocks)
            or bool(self.extra_options)
        )


def _parse_options(
    opts: memoryview,
) -> tuple[int | None, int | None, bool, SackBlocks, tuple[int, int] | None]:
    mss = wscale = None
    sack_ok = False
    sack: list[tuple[int, int]] = []
    ts = None
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise DecodeError(f"TCP option {kind} truncated")
        length = opts[i + 1]
        if length < 2 or i + length > n:
            raise DecodeError(f"TCP option {kind} has bad length {length}")
        body = opts[i + 2 : i + length]
        if kind == OPT_MSS:
            if length != 4:
                raise DecodeError(f"MSS option length {length}")
            mss = int.from_bytes(body, "big")
        elif kind == OPT_WSCALE:
            if length != 3:
                raise DecodeError(f"window scale option length {length}")
            wscale = min(body[0], MAX_WSCALE)
        elif kind == OPT_SACK_PERMITTED:
            if length != 2:
                raise DecodeError(f"SACK-permitted option length {length}")
            sack_ok = True
        elif kind == OPT_SACK:
            if (length - 2) % 8 or length == 2:
                raise DecodeError(f"SACK option length {length}")
            for j in range(0, length - 2, 8):
                sack.append(_SACK_BLOCK.unpack_from(body, j))
        elif kind == OPT_TIMESTAMP:
            if length != 10:
                raise DecodeError(f"timestamp option length {length}")
            ts = struct.unpack_from("!II", body)
        i += length
    return mss, wscale, sack_ok, tuple(sack), ts


__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "HEADER_LEN",
    "MAX_WSCALE",
    "PROTO_TCP",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "SackBlocks",
    "TcpRepr",
    "flags_str",
]
