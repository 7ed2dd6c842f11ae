"""The stack's segment fast path gives exactly what the ``TcpRepr`` codec gives: same bytes out,
same fields in, same errors; and the arithmetic checksum check agrees with RFC 1071."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import DecodeError
from pipeline.tcp import TcpConfig
from pipeline.tcp.segment import RxSegment, Segment, emit, parse
from pipeline.wire.checksum import pseudo_header_sum, verify
from pipeline.wire.tcp import ACK, FIN, PROTO_TCP, PSH, SYN, TcpRepr
from tests.pipeline.tcp.tcp_harness import CLIENT, CLIENT6, VIP, VIP6, StackDriver

FIELDS = (
    "src_port",
    "dst_port",
    "seq",
    "ack",
    "flags",
    "window",
    "mss",
    "wscale",
    "sack_permitted",
    "sack_blocks",
    "timestamp",
    "seg_len",
)

LINUX_SYN_OPTIONS = "020405b40402080a1234567800000000010303"
SEGMENTS = [
    TcpRepr(49500, 443, 1, 2, ACK, 502),
    TcpRepr(49500, 443, 0xFFFFFFFF, 7, ACK | PSH, 65535, b"x" * 51, timestamp=(1, 0xFFFFFFFF)),
    TcpRepr(1, 2, 3, 4, ACK | FIN | 0x100, 0, b"odd", urgent=9),  # NS bit, urgent pointer
    TcpRepr(1, 2, 3, 4, ACK, 9, b"", timestamp=(0, 0)),
    TcpRepr(1, 2, 3, 0, SYN, 64240, mss=1460, wscale=7, sack_permitted=True, timestamp=(5, 0)),
    TcpRepr(1, 2, 3, 4, ACK, 9, b"y" * 1000, timestamp=(5, 6), sack_blocks=((10, 20),)),
    TcpRepr(7, 49500, 0xC0FFEE, 1001, SYN | ACK, 65535, mss=1460),  # a SYN cookie's SYN-ACK
    TcpRepr(7, 49500, 5, 1001, SYN | ACK, 65535, mss=1460, timestamp=(9, 8)),
    TcpRepr(1, 2, 3, 4, ACK, 9, b"\x00" * 7, extra_options=b"\x1e\x02"),
    # Linux's SYN layout (MSS, SACK-permitted, TS, NOP, WS): window scale 15 (clamped), and 7
    TcpRepr(1, 2, 3, 0, SYN, 64240, extra_options=bytes.fromhex(LINUX_SYN_OPTIONS + "0f")),
    TcpRepr(1, 2, 3, 0, SYN, 9, b"data", extra_options=bytes.fromhex(LINUX_SYN_OPTIONS + "07")),
]


def fields(seg: Segment) -> dict[str, object]:
    return {f: getattr(seg, f) for f in FIELDS} | {"payload": bytes(seg.payload)}


@pytest.mark.parametrize("seg", SEGMENTS)
@pytest.mark.parametrize("v6", [False, True])
def test_emit_is_byte_for_byte_the_codec(seg: TcpRepr, v6: bool) -> None:
    src, dst = (VIP6, CLIENT6) if v6 else (VIP, CLIENT)
    raw = emit(seg, src, dst)
    assert raw == seg.emit(src, dst)
    assert verify(raw, pseudo_header_sum(src, dst, PROTO_TCP, len(raw)))


@pytest.mark.parametrize("seg", SEGMENTS)
def test_parse_gives_the_codecs_fields(seg: TcpRepr) -> None:
    raw = seg.emit(CLIENT, VIP)
    assert fields(parse(memoryview(raw))) == fields(TcpRepr.parse(raw))


def test_common_layouts_take_the_view_and_the_rest_the_codec() -> None:
    plain, ts = SEGMENTS[0], SEGMENTS[1]
    assert isinstance(parse(memoryview(plain.emit(CLIENT, VIP))), RxSegment)
    assert isinstance(parse(memoryview(ts.emit(CLIENT, VIP))), RxSegment)
    assert isinstance(parse(memoryview(SEGMENTS[4].emit(CLIENT, VIP))), TcpRepr)
    linux_syn = parse(memoryview(SEGMENTS[-1].emit(CLIENT, VIP)))
    assert (linux_syn.mss, linux_syn.wscale, linux_syn.sack_permitted) == (1460, 7, True)
    assert linux_syn.timestamp == (0x12345678, 0) and bytes(linux_syn.payload) == b"data"


def test_timestamp_layout_cut_short_is_the_codecs_error() -> None:
    raw = SEGMENTS[3].emit(CLIENT, VIP)[:28]
    with pytest.raises(DecodeError):
        TcpRepr.parse(raw)
    with pytest.raises(DecodeError):
        parse(memoryview(raw))


@given(st.binary(min_size=20, max_size=80))
def test_parse_of_random_bytes_agrees_with_the_codec(raw: bytes) -> None:
    try:
        want = fields(TcpRepr.parse(raw))
    except DecodeError:
        with pytest.raises(DecodeError):
            parse(memoryview(raw))
        return
    assert fields(parse(memoryview(raw))) == want


U32 = st.integers(0, 0xFFFFFFFF)


@given(
    st.integers(0, 0xFFFF),
    U32,
    st.binary(max_size=300),
    st.none() | st.tuples(U32, U32),
    st.none() | st.integers(0, 0xFFFF),
    st.none() | st.integers(0, 14),
    st.booleans(),
    st.lists(st.tuples(U32, U32), max_size=2).map(tuple),
    st.booleans(),
)
def test_emit_of_random_segments_is_the_codec(
    window: int,
    seq: int,
    payload: bytes,
    ts: tuple[int, int] | None,
    mss: int | None,
    wscale: int | None,
    sack_ok: bool,
    sack: tuple[tuple[int, int], ...],
    v6: bool,
) -> None:
    src, dst = (VIP6, CLIENT6) if v6 else (VIP, CLIENT)
    seg = TcpRepr(
        443,
        49500,
        seq,
        seq ^ 0x5A5A5A5A,
        ACK | PSH,
        window,
        payload,
        mss=mss,
        wscale=wscale,
        sack_permitted=sack_ok,
        sack_blocks=sack,
        timestamp=ts,
    )
    try:
        want = seg.emit(src, dst)
    except DecodeError:  # more than 40 bytes of options: refused alike
        with pytest.raises(DecodeError):
            emit(seg, src, dst)
        return
    assert emit(seg, src, dst) == want


@given(st.binary(min_size=20, max_size=200), st.integers(0, 199), st.booleans())
def test_stack_checksum_check_is_rfc1071(payload: bytes, flip: int, v6: bool) -> None:
    d = StackDriver(v6=v6)
    seg = replace(d.tpl(seq=1, flags=SYN), payload=payload)
    raw = bytearray(seg.emit(d.client, d.vip))
    for bad in (0, 1):
        d.send_raw(bytes(raw))
        assert verify(raw, pseudo_header_sum(d.client, d.vip, PROTO_TCP, len(raw))) != bad
        assert d.counters["drop.bad_checksum"] == bad
        raw[flip % len(raw)] ^= 0x10


def test_idle_timer_follows_activity() -> None:
    """The idle deadline moves later with every segment without a heap entry each time; the
    first entry, when due, is filed again at the later time instead of firing."""
    d = StackDriver(TcpConfig(idle_timeout=5.0))
    s = d.handshake(isn=1000).seq + 1
    seq = 1001
    for _ in range(8):  # activity until t = 4
        d.tick(0.5)
        d.send(seq=seq, ack=s, flags=ACK | PSH, payload=b"p")
        seq += 1
    assert len(d.stack._heap) <= 3  # not one entry per segment
    d.tick(4.5)
    assert d.rec.closed == []  # t = 8.5 < 4 + 5
    (rst,) = d.tick(0.6)
    assert rst.flags & 0x04 and d.rec.closed == ["idle"]
