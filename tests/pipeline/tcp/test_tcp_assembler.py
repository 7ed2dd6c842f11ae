"""Reassembler: any order in, in-order bytes out once, overlaps checked, bounds counted."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.tcp import Reassembler

DATA = bytes(range(256)) * 8


def test_in_order_and_out_of_order_delivery() -> None:
    r = Reassembler(100, 10_000, 64, 1000)
    assert r.add(110, DATA[10:20]) == 0
    assert r.ooo_chunks == 1 and r.sack_blocks(3) == [(110, 120)]
    assert r.add(100, DATA[0:10]) == 20
    assert r.read() == DATA[:20] and r.nxt == 120 and r.ooo_chunks == 0


def test_read_limit_keeps_the_rest() -> None:
    r = Reassembler(0, 100, 8)
    r.add(0, b"abcdef")
    r.add(6, b"ghij")
    assert r.read(4) == b"abcd" and r.ready_bytes == 6
    assert r.read(100) == b"efghij" and r.read() == b""


def test_duplicates_and_overlaps_with_same_data_are_silent() -> None:
    r = Reassembler(0, 10_000, 64, 1000)
    r.add(20, DATA[20:40])
    r.add(30, DATA[30:50])  # overlaps the held chunk
    r.add(0, DATA[0:25])
    r.add(10, DATA[10:15])  # already delivered
    assert r.read() == DATA[:50] and r.conflicts == []


def test_overlap_with_different_data_keeps_first_and_reports() -> None:
    r = Reassembler(0, 10_000, 64, 1000)
    r.add(10, b"AAAAAAAAAA")
    r.add(15, b"BBBBBBBBBB")  # 15..20 conflicts, 20..25 is new
    assert r.conflicts == [(15, 5)]
    r.add(0, b"0123456789")
    assert r.read() == b"0123456789" + b"AAAAAAAAAA" + b"BBBBB"
    r.conflicts.clear()
    r.add(5, b"xxxxx")  # differs from delivered history
    assert r.conflicts == [(5, 5)]


def test_bounds_refuse_and_count_but_in_order_always_fits() -> None:
    r = Reassembler(0, 10, 2)
    r.add(100, b"x" * 8)
    r.add(200, b"y" * 8)  # bytes bound: refused
    assert r.refused == 8 and r.ooo_chunks == 1
    r.add(300, b"z")
    r.add(400, b"w")  # chunk bound: refused
    assert r.ooo_chunks == 2 and r.refused == 9
    assert r.add(0, b"a" * 50) == 50  # in-order data is never refused


def test_sack_blocks_most_recent_first_and_merged() -> None:
    r = Reassembler(0, 10_000, 64)
    r.add(10, b"a" * 10)
    r.add(20, b"b" * 10)  # adjacent: merged with the first
    r.add(50, b"c" * 10)
    r.add(80, b"d" * 10)
    assert r.sack_blocks(3) == [(80, 90), (10, 30), (50, 60)]
    r.add(50, b"c" * 10)  # duplicate changes nothing stored
    assert r.sack_blocks(2) == [(80, 90), (10, 30)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 2**31))
def test_any_order_with_duplicates_yields_the_stream(base: int, seed: int) -> None:
    rnd = random.Random(seed)
    data = random.Random(seed).randbytes(3000)
    pieces = []
    pos = 0
    while pos < len(data):
        n = rnd.randint(1, 400)
        pieces.append((pos, data[pos : pos + n]))
        pos += n
    pieces += [(o, d) for o, d in pieces if rnd.random() < 0.3]  # duplicates
    # overlapping re-segmentations of the same bytes
    for _ in range(5):
        a = rnd.randrange(len(data))
        b = min(len(data), a + rnd.randint(1, 600))
        pieces.append((a, data[a:b]))
    rnd.shuffle(pieces)
    r = Reassembler(base, 1 << 20, 1 << 12, 4096)
    out = bytearray()
    for off, d in pieces:
        r.add(base + off, d)
        out += r.read()
    assert bytes(out) == data and r.conflicts == [] and r.ooo_chunks == 0
