"""TAP offload: frames behind a virtio_net_hdr, partial checksums completed the way the kernel
leaves them (pseudo-header sum in the field, NEEDS_CSUM, csum_start/csum_offset)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.io.tap import VNET_F_NEEDS_CSUM, VNET_HDR, VNET_HDR_LEN, from_vnet, to_vnet_gso
from pipeline.wire.checksum import ones_sum, pseudo_header_sum, verify
from pipeline.wire.gso import ChecksumOk
from pipeline.wire.ipv4 import PROTO_TCP, build_header
from pipeline.wire.ipv6 import Ipv6Repr
from pipeline.wire.tcp import TcpRepr

SRC4, DST4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 10])
SRC6, DST6 = bytes.fromhex("20010db8" + "0" * 23 + "1"), bytes.fromhex("20010db8" + "0" * 23 + "a")
ETH4 = bytes.fromhex("02000000aa0102000000bb020800")
ETH6 = bytes.fromhex("02000000aa0102000000bb0286dd")
GSO_TCPV4, GSO_TCPV6 = 1, 4


def _segment(src: bytes, dst: bytes, size: int, seed: int) -> bytes:
    payload = random.Random(seed).randbytes(size)
    seg = TcpRepr(40000, 7, 1000, 2000, 0x18, 500, payload, timestamp=(5, 6))
    return seg.emit(src, dst)


def _partial(segment: bytes, src: bytes, dst: bytes) -> bytes:
    """What the kernel hands over: the checksum field holds the folded pseudo-header sum."""
    psum = pseudo_header_sum(src, dst, PROTO_TCP, len(segment))
    return segment[:16] + psum.to_bytes(2, "big") + segment[18:]


def _vnet(flags: int, gso_type: int, gso_size: int, start: int, offset: int) -> bytes:
    return VNET_HDR.pack(flags, gso_type, start + 32, gso_size, start, offset)


def test_plain_frame_is_returned_unchanged() -> None:
    seg = _segment(SRC4, DST4, 100, 1)
    frame = ETH4 + build_header(SRC4, DST4, PROTO_TCP, len(seg), 1) + seg
    assert from_vnet(bytes(VNET_HDR_LEN) + frame) == (frame, False)


def test_ipv4_super_segment_checksum_completed() -> None:
    seg = _segment(SRC4, DST4, 60000, 2)  # a TSO super-segment: 41 MSS of data in one frame
    ip = build_header(SRC4, DST4, PROTO_TCP, len(seg), 7)
    frame = ETH4 + ip + _partial(seg, SRC4, DST4)
    out = from_vnet(_vnet(VNET_F_NEEDS_CSUM, GSO_TCPV4, 1448, 34, 16) + frame)
    assert out is not None
    got, completed = out
    assert completed and isinstance(got, ChecksumOk)  # the transport will not sum it again
    assert got == ETH4 + ip + seg  # byte for byte what a full checksum computation gives
    tcp = got[34:]
    assert verify(tcp, pseudo_header_sum(SRC4, DST4, PROTO_TCP, len(tcp)))


def test_ipv6_segment_checksum_completed() -> None:
    seg = _segment(SRC6, DST6, 3001, 3)  # odd length
    ip = Ipv6Repr(SRC6, DST6, PROTO_TCP, len(seg)).emit(seg)[:40]
    frame = ETH6 + ip + _partial(seg, SRC6, DST6)
    out = from_vnet(_vnet(VNET_F_NEEDS_CSUM, GSO_TCPV6, 1428, 54, 16) + frame)
    assert out == (ETH6 + ip + seg, True)


def test_computed_zero_is_written_as_all_ones() -> None:
    # A "segment" whose full checksum comes out 0x0000: the field must read 0xFFFF, which
    # verifies just the same (one's complement has two zeros).
    body = bytearray(b"\x12\x34" * 8 + b"\x00\x00" + b"\x00" * 2)
    s = ones_sum(bytes(body))
    body[-2:] = (~s & 0xFFFF).to_bytes(2, "big")  # now the whole sums to 0xFFFF
    out = from_vnet(_vnet(VNET_F_NEEDS_CSUM, 0, 0, 0, 16) + bytes(body))
    assert out is not None
    assert out[0][16:18] == b"\xff\xff"
    assert verify(out[0])


def test_checksum_field_beyond_the_frame_is_refused() -> None:
    frame = ETH4 + bytes(40)
    assert from_vnet(_vnet(VNET_F_NEEDS_CSUM, 0, 0, 34, 16)) is None  # header only
    assert from_vnet(_vnet(VNET_F_NEEDS_CSUM, 0, 0, 60, 16) + frame) is None
    assert from_vnet(b"\x01\x00\x00") is None  # shorter than the header


@given(st.binary(max_size=200))
def test_random_bytes_give_a_frame_or_none(raw: bytes) -> None:
    out = from_vnet(raw)
    assert out is None or (isinstance(out[0], bytes) and len(out[0]) == len(raw) - VNET_HDR_LEN)


@pytest.mark.parametrize("version", [4, 6])
def test_tso_frame_round_trips_through_the_kernel_convention(version: int) -> None:
    src, dst = (SRC4, DST4) if version == 4 else (SRC6, DST6)
    seg = _segment(src, dst, 14000, 4)
    if version == 4:
        frame = ETH4 + build_header(src, dst, PROTO_TCP, len(seg), 9) + seg
    else:
        frame = ETH6 + Ipv6Repr(src, dst, PROTO_TCP, len(seg)).emit(seg)
    parts = to_vnet_gso(frame, 1400)
    assert parts is not None
    raw = b"".join(bytes(p) for p in parts)
    flags, gso_type, hdr_len, gso_size, start, offset = VNET_HDR.unpack_from(raw)
    l4 = 34 if version == 4 else 54
    assert (flags, gso_type, gso_size, start, offset) == (
        VNET_F_NEEDS_CSUM, 1 if version == 4 else 4, 1400, l4, 16,
    )  # fmt: skip
    assert hdr_len == l4 + 32  # TCP header with the timestamp option
    body = raw[VNET_HDR_LEN:]
    assert body[l4 + 16 : l4 + 18] == pseudo_header_sum(src, dst, PROTO_TCP, len(seg)).to_bytes(
        2, "big"
    )
    assert from_vnet(raw) == (frame, True)  # completing it gives back the full checksum


def test_tso_refuses_what_is_not_tcp() -> None:
    assert to_vnet_gso(ETH4 + bytes(40), 1400) is None  # protocol 0
    assert to_vnet_gso(ETH4[:12] + b"\x08\x06" + bytes(40), 1400) is None  # ARP


def test_data_valid_frame_is_vouched_for_unchanged() -> None:
    seg = _segment(SRC4, DST4, 100, 5)
    frame = ETH4 + build_header(SRC4, DST4, PROTO_TCP, len(seg), 1) + seg
    out = from_vnet(_vnet(0x02, 0, 0, 0, 0) + frame)  # VIRTIO_NET_HDR_F_DATA_VALID
    assert out == (frame, False) and isinstance(out[0], ChecksumOk)
    plain = from_vnet(bytes(VNET_HDR_LEN) + frame)
    assert plain is not None and not isinstance(plain[0], ChecksumOk)
