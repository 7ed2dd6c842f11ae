"""The stack's hot path over ``pipeline.wire.tcp``: received segments decoded into a light view,
and segments encoded with their checksum in one pass.

``TcpRepr`` is the codec; this is the view class the style guide allows once a profile shows it
matters (a short connection is ~8 segments, each decoded and half of them encoded). ``parse``
handles the two layouts nearly every established segment has — no options, or the RFC 7323
appendix A timestamp layout (NOP, NOP, TS) — with one ``struct`` call into a slotted
``RxSegment``, and Linux's SYN (MSS, SACK-permitted, TS, NOP, WS) into an ``RxSyn``; anything
else (other SYN options, SACK blocks, malformed lengths) goes to ``TcpRepr.parse``, which
decides and raises alike. ``emit`` returns exactly the bytes ``TcpRepr.emit`` would, in one
pass. ``tx_segment`` builds the ``TcpRepr`` of a segment to send without the frozen dataclass's
per-field ``object.__setattr__``.

The checksum is RFC 1071 done as arithmetic: since 2^16 = 1 (mod 0xFFFF), the one's-complement
sum of 16-bit words is the residue mod 0xFFFF of the integer those bytes spell
(``pipeline.wire.checksum.ones_sum``), and the IPv4 and IPv6 pseudo-headers both reduce to
``int(src) + int(dst) + protocol + length``. The payload's integer is reduced before it is
shifted (odd length) or added: one pass over it, not three (each a new big integer).
"""

from __future__ import annotations

import struct
from typing import Protocol

from pipeline.wire.tcp import (
    FIN,
    HEADER_LEN,
    MAX_WSCALE,
    OPT_MSS,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    PROTO_TCP,
    SYN,
    SackBlocks,
    TcpRepr,
)

_HDR = struct.Struct("!HHIIBBHHH")
_HDR_TS = struct.Struct("!HHIIBBHHHIII")  # header + NOP NOP kind=8 len=10 + TSval TSecr
_TS_OPT = 0x0101080A  # NOP, NOP, timestamp kind 8, length 10
# Linux's SYN: MSS, SACK-permitted, timestamps, NOP, window scale
_SYN_LINUX = struct.Struct("!HHIIBBHHHHHHHIIHBB")
_SYN_HLEN = HEADER_LEN + 20
_OPT_MSS = struct.Struct("!BBH")
_OPT_ALL = struct.Struct("!BBHBBBBIBBBBII")  # MSS; NOP WS; NOP NOP SACK-OK; NOP NOP TS
_SACK_OK = (0x01010402, 1, 1, OPT_TIMESTAMP, 10)  # NOP NOP kind 4 len 2; NOP NOP kind 8 len 10
_OFF_PLAIN = 5 << 4
_OFF_TS = 8 << 4
_OFF_SYN = 10 << 4
_TS_HLEN = HEADER_LEN + 12


class Segment(Protocol):
    """What the endpoint reads of a received segment (``TcpRepr`` and ``RxSegment`` both are)."""

    @property
    def src_port(self) -> int: ...
    @property
    def dst_port(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def ack(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def window(self) -> int: ...
    @property
    def payload(self) -> bytes | memoryview: ...
    @property
    def mss(self) -> int | None: ...
    @property
    def wscale(self) -> int | None: ...
    @property
    def sack_permitted(self) -> bool: ...
    @property
    def sack_blocks(self) -> SackBlocks: ...
    @property
    def timestamp(self) -> tuple[int, int] | None: ...
    @property
    def seg_len(self) -> int: ...


class RxSegment:
    """A received segment with no option but timestamps (fields as in ``TcpRepr``)."""

    __slots__ = ("src_port", "dst_port", "seq", "ack", "flags", "window", "payload", "timestamp")

    mss: int | None = None
    wscale: int | None = None
    sack_permitted = False
    sack_blocks: SackBlocks = ()

    def __init__(
        self,
        src_port: int,
        dst_port: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload: memoryview,
        timestamp: tuple[int, int] | None,
    ) -> None:
        self.src_port = src_port
        self.dst_port = dst_port
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.payload = payload
        self.timestamp = timestamp

    @property
    def seg_len(self) -> int:
        flags = self.flags
        return len(self.payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)

    def __repr__(self) -> str:
        return (
            f"RxSegment({self.src_port}->{self.dst_port} seq={self.seq} ack={self.ack} "
            f"flags={self.flags:#x} window={self.window} len={len(self.payload)} "
            f"ts={self.timestamp})"
        )


class RxSyn(RxSegment):
    """A received SYN in Linux's option layout (MSS, SACK-permitted, timestamps, NOP, window
    scale): one per connection, decoded without the frozen ``TcpRepr`` (~1 us of
    ``object.__setattr__`` per field)."""

    __slots__ = ("mss", "wscale", "sack_permitted", "urgent")

    def __init__(
        self,
        src_port: int,
        dst_port: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload: memoryview,
        timestamp: tuple[int, int],
        mss: int,
        wscale: int,
        urgent: int,
    ) -> None:
        RxSegment.__init__(self, src_port, dst_port, seq, ack, flags, window, payload, timestamp)
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = True
        self.urgent = urgent


def parse(view: memoryview) -> Segment:
    """Decode a segment of at least ``HEADER_LEN`` bytes (``DecodeError`` when malformed)."""
    off = view[12] & 0xF0
    if off == _OFF_PLAIN:
        sport, dport, seq, ack, off, flags, window, _c, _u = _HDR.unpack_from(view)
        return RxSegment(
            sport, dport, seq, ack, flags | (off & 1) << 8, window, view[HEADER_LEN:], None
        )
    if off == _OFF_TS and len(view) >= _TS_HLEN:
        sport, dport, seq, ack, off, flags, window, _c, _u, opt, tsval, tsecr = _HDR_TS.unpack_from(
            view
        )
        if opt == _TS_OPT:
            return RxSegment(
                sport,
                dport,
                seq,
                ack,
                flags | (off & 1) << 8,
                window,
                view[_TS_HLEN:],
                (tsval, tsecr),
            )
    elif off == _OFF_SYN and len(view) >= _SYN_HLEN:
        f = _SYN_LINUX.unpack_from(view)
        if (
            f[9] == 0x0204
            and f[11] == 0x0402
            and f[12] == 0x080A
            and f[15] == 0x0103
            and f[16] == 3
        ):
            return RxSyn(
                f[0],
                f[1],
                f[2],
                f[3],
                f[5] | (f[4] & 1) << 8,
                f[6],
                view[_SYN_HLEN:],
                (f[13], f[14]),
                f[10],
                f[17] if f[17] < MAX_WSCALE else MAX_WSCALE,
                f[8],
            )
    return TcpRepr.parse(view)


# TcpRepr's slot setters, by name: ``tx_segment`` fills a new instance through them (a test
# checks it sets every field)
_NEW = object.__new__
(
    _SET_SPORT,
    _SET_DPORT,
    _SET_SEQ,
    _SET_ACK,
    _SET_FLAGS,
    _SET_WINDOW,
    _SET_PAYLOAD,
    _SET_MSS,
    _SET_WSCALE,
    _SET_SACK_OK,
    _SET_SACK,
    _SET_TS,
    _SET_URGENT,
    _SET_EXTRA,
) = (
    getattr(TcpRepr, name).__set__
    for name in (
        "src_port",
        "dst_port",
        "seq",
        "ack",
        "flags",
        "window",
        "payload",
        "mss",
        "wscale",
        "sack_permitted",
        "sack_blocks",
        "timestamp",
        "urgent",
        "extra_options",
    )
)


def tx_segment(
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    payload: bytes,
    timestamp: tuple[int, int] | None,
    sack_blocks: SackBlocks,
    mss: int | None = None,
    wscale: int | None = None,
    sack_permitted: bool = False,
) -> TcpRepr:
    """``TcpRepr(src_port, ..., timestamp=..., sack_blocks=...)``, the same object, for the
    segments the endpoint makes (one per segment sent): a frozen dataclass's ``__init__`` pays
    an ``object.__setattr__`` per field (1.5 us); its slot setters cost half that."""
    seg = _NEW(TcpRepr)
    _SET_SPORT(seg, src_port)
    _SET_DPORT(seg, dst_port)
    _SET_SEQ(seg, seq)
    _SET_ACK(seg, ack)
    _SET_FLAGS(seg, flags)
    _SET_WINDOW(seg, window)
    _SET_PAYLOAD(seg, payload)
    _SET_MSS(seg, mss)
    _SET_WSCALE(seg, wscale)
    _SET_SACK_OK(seg, sack_permitted)
    _SET_SACK(seg, sack_blocks)
    _SET_TS(seg, timestamp)
    _SET_URGENT(seg, 0)
    _SET_EXTRA(seg, b"")
    return seg


def addr_sum(src: bytes, dst: bytes) -> int:
    """The addresses' share of the pseudo-header sum (see the module docstring)."""
    return int.from_bytes(src, "big") + int.from_bytes(dst, "big")


def emit(seg: TcpRepr, src: bytes, dst: bytes, addrs: int | None = None) -> bytes:
    """``seg.emit(src, dst)``, byte for byte; ``addrs`` is ``addr_sum(src, dst)`` if known."""
    if (
        seg.mss is not None
        or seg.wscale is not None
        or seg.sack_permitted
        or seg.sack_blocks
        or seg.extra_options
    ):
        return _emit_options(seg, src, dst, addrs)
    payload = seg.payload
    plen = len(payload)
    flags = seg.flags
    sport, dport, window, urgent = seg.src_port, seg.dst_port, seg.window, seg.urgent
    seq, ack = seg.seq & 0xFFFFFFFF, seg.ack & 0xFFFFFFFF
    if addrs is None:
        addrs = addr_sum(src, dst)
    # The header's share of the sum without packing it first: a 16-bit field adds its value,
    # a 32-bit one hi + lo, which is its value mod 0xFFFF (module docstring); the checksum
    # field counts as zero.
    ts = seg.timestamp
    if ts is None:
        offb = _OFF_PLAIN | (flags >> 8) & 1
        total = sport + dport + seq + ack + (offb << 8 | flags & 0xFF) + window + urgent
        total += addrs + PROTO_TCP + HEADER_LEN + plen
        if plen:
            total += int.from_bytes(payload, "big") % 0xFFFF << (8 if plen & 1 else 0)
        csum = (0xFFFF - total % 0xFFFF) % 0xFFFF
        head = _HDR.pack(sport, dport, seq, ack, offb, flags & 0xFF, window, csum, urgent)
    else:
        offb = _OFF_TS | (flags >> 8) & 1
        tsval, tsecr = ts
        total = sport + dport + seq + ack + (offb << 8 | flags & 0xFF) + window + urgent
        total += _TS_OPT + tsval + tsecr + addrs + PROTO_TCP + _TS_HLEN + plen
        if plen:
            total += int.from_bytes(payload, "big") % 0xFFFF << (8 if plen & 1 else 0)
        csum = (0xFFFF - total % 0xFFFF) % 0xFFFF
        head = _HDR_TS.pack(
            sport, dport, seq, ack, offb, flags & 0xFF, window, csum, urgent, _TS_OPT, tsval, tsecr
        )
    return head + payload if plen else head


def _emit_options(seg: TcpRepr, src: bytes, dst: bytes, addrs: int | None) -> bytes:
    """A segment with any other option (SYN, SYN-ACK, SACK blocks): ``options_bytes`` lays
    them out (and refuses more than 40 bytes), the checksum is done as above."""
    if seg.sack_blocks or seg.extra_options or seg.mss is None:
        opts = seg.options_bytes()
    elif seg.wscale is None and not seg.sack_permitted and seg.timestamp is None:
        opts = _OPT_MSS.pack(OPT_MSS, 4, seg.mss)  # a SYN cookie's SYN-ACK
    elif seg.wscale is not None and seg.sack_permitted and seg.timestamp is not None:
        ts = seg.timestamp  # a SYN-ACK with every option, laid out as options_bytes does
        opts = _OPT_ALL.pack(OPT_MSS, 4, seg.mss, 1, OPT_WSCALE, 3, seg.wscale, *_SACK_OK, *ts)
    else:
        opts = seg.options_bytes()
    payload = seg.payload
    hlen = HEADER_LEN + len(opts)
    flags = seg.flags
    sport, dport, window, urgent = seg.src_port, seg.dst_port, seg.window, seg.urgent
    seq, ack = seg.seq & 0xFFFFFFFF, seg.ack & 0xFFFFFFFF
    offb = (hlen // 4) << 4 | (flags >> 8) & 1
    if addrs is None:
        addrs = addr_sum(src, dst)
    body = opts + payload if payload else opts  # 4-byte aligned: its words stay words
    blen = len(body)
    # the fixed header's share added field by field, as in ``emit``
    total = sport + dport + seq + ack + (offb << 8 | flags & 0xFF) + window + urgent
    total += addrs + PROTO_TCP + hlen + len(payload)
    total += int.from_bytes(body, "big") % 0xFFFF << (8 if blen & 1 else 0)
    csum = (0xFFFF - total % 0xFFFF) % 0xFFFF
    return _HDR.pack(sport, dport, seq, ack, offb, flags & 0xFF, window, csum, urgent) + body


__all__ = ["RxSegment", "RxSyn", "Segment", "addr_sum", "emit", "parse", "tx_segment"]
