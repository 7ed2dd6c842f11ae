"""TCP header/options codec: round trips, checksums, truncation, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import DecodeError
from pipeline.wire.checksum import pseudo_header_sum, verify
from pipeline.wire.tcp import ACK, FIN, PSH, SYN, TcpRepr, flags_str

SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC6, DST6 = bytes(15) + b"\x01", bytes(15) + b"\x02"


def test_round_trip_every_option() -> None:
    seg = TcpRepr(
        1234,
        80,
        0xFFFFFFF0,
        42,
        SYN | ACK,
        29200,
        b"",
        mss=1460,
        wscale=7,
        sack_permitted=True,
        timestamp=(1, 2),
    )
    raw = seg.emit(SRC4, DST4)
    assert len(raw) % 4 == 0 and (raw[12] >> 4) * 4 == len(raw)
    assert verify(raw, pseudo_header_sum(SRC4, DST4, 6, len(raw)))
    assert TcpRepr.parse(raw) == seg


def test_round_trip_data_with_sack_blocks_v6() -> None:
    seg = TcpRepr(
        5, 6, 7, 8, ACK | PSH, 100, b"hello", sack_blocks=((10, 20), (30, 40)), timestamp=(9, 9)
    )
    raw = seg.emit(SRC6, DST6)
    assert verify(raw, pseudo_header_sum(SRC6, DST6, 6, len(raw)))
    back = TcpRepr.parse(raw)
    assert back == seg and bytes(back.payload) == b"hello"
    assert back.seg_len == 5


def test_known_bytes() -> None:
    # SYN from port 0x1234 to 80, seq 1, MSS 1460; checksum checked against the pseudo-header.
    raw = bytes.fromhex("1234 0050 00000001 00000000 6002 ffff 0000 0000 020405b4".replace(" ", ""))
    seg = TcpRepr.parse(raw)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.flags, seg.window, seg.mss) == (
        0x1234,
        80,
        1,
        SYN,
        0xFFFF,
        1460,
    )
    assert seg.emit(SRC4, DST4)[:16] == raw[:16]
    assert flags_str(SYN | ACK | FIN) == "SFA"


def test_seg_len_counts_syn_and_fin() -> None:
    assert TcpRepr(1, 2, 3, flags=SYN | FIN, payload=b"ab").seg_len == 4


@pytest.mark.parametrize("n", [0, 1, 19])
def test_truncated_header(n: int) -> None:
    with pytest.raises(DecodeError):
        TcpRepr.parse(bytes(n))


def test_data_offset_past_end_and_below_minimum() -> None:
    raw = bytearray(TcpRepr(1, 2, 3).emit(SRC4, DST4))
    raw[12] = 0x60  # 24-byte header in a 20-byte segment
    with pytest.raises(DecodeError):
        TcpRepr.parse(bytes(raw))
    raw[12] = 0x40  # 16 bytes: below the fixed header
    with pytest.raises(DecodeError):
        TcpRepr.parse(bytes(raw))


@pytest.mark.parametrize(
    "opts",
    [
        b"\x02\x05\x05\xb4\x00\x00\x00\x00",  # MSS with length 5
        b"\x08\x0a\x00\x00\x00\x01\x00\x00",  # timestamp running past the options
        b"\x05\x03\x00\x00",  # SACK with no block
        b"\x03\x01\x00\x00",  # length below 2
        b"\x01\x01\x01\x02",  # kind without a length byte
    ],
)
def test_malformed_options(opts: bytes) -> None:
    raw = bytearray(TcpRepr(1, 2, 3).emit(SRC4, DST4))
    raw[12] = ((20 + len(opts)) // 4) << 4
    with pytest.raises(DecodeError):
        TcpRepr.parse(bytes(raw[:20]) + opts)


def test_unknown_options_skipped_and_end_stops() -> None:
    opts = b"\x1e\x04\xaa\xbb" + b"\x02\x04\x05\x00" + b"\x00\x02\x04\x05"
    raw = bytearray(TcpRepr(1, 2, 3).emit(SRC4, DST4))
    raw[12] = ((20 + len(opts)) // 4) << 4
    seg = TcpRepr.parse(bytes(raw[:20]) + opts)
    assert seg.mss == 0x500


def test_wscale_clamped_to_14() -> None:
    opts = b"\x01\x03\x03\x1f"
    raw = bytearray(TcpRepr(1, 2, 3).emit(SRC4, DST4))
    raw[12] = 0x60
    assert TcpRepr.parse(bytes(raw[:20]) + opts).wscale == 14


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_parse_random_bytes_returns_or_raises_decode_error(data: bytes) -> None:
    try:
        seg = TcpRepr.parse(data)
    except DecodeError:
        return
    assert 0 <= seg.seq < 2**32 and len(seg.payload) <= len(data) - 20
