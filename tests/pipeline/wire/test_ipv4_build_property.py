"""``build_header`` computes its checksum arithmetically: every header it makes carries the
RFC 1071 checksum (``checksum.verify``, a word-by-word sum), the fields it was given, and passes
``check_header``."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from pipeline.wire.checksum import checksum, sums_to_ones, verify
from pipeline.wire.ipv4 import build_header, check_header

addr = st.binary(min_size=4, max_size=4)


@given(
    addr,
    addr,
    st.integers(0, 255),
    st.integers(0, 65515),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.integers(0, 255),
    st.booleans(),
)
def test_build_header_checksum_is_rfc1071(
    src: bytes, dst: bytes, proto: int, plen: int, ident: int, ttl: int, tos: int, df: bool
) -> None:
    hdr = build_header(src, dst, proto, plen, ident, ttl, tos, df)
    assert len(hdr) == 20 and verify(hdr)
    fields = struct.unpack("!BBHHHBBH4s4s", hdr)
    assert fields[:7] == (0x45, tos, 20 + plen, ident, 0x4000 if df else 0, ttl, proto)
    assert fields[8:] == (src, dst)
    zeroed = hdr[:10] + b"\x00\x00" + hdr[12:]
    assert fields[7] == checksum(zeroed)
    assert check_header(hdr + bytes(plen))[:2] == (20, 20 + plen)


def _words_sum(data: bytes) -> int:
    """RFC 1071 the slow way: 16-bit words, end-around carry, odd byte padded."""
    if len(data) % 2:
        data += b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


@given(st.binary(max_size=64))
def test_sums_to_ones_is_the_folded_sum_being_all_ones(data: bytes) -> None:
    assert sums_to_ones(data) == (_words_sum(data) == 0xFFFF)
    if data:  # with its checksum appended (at an even offset) it checks out
        body = data + b"\x00" * (len(data) % 2)
        assert sums_to_ones(body + checksum(body).to_bytes(2, "big"))
