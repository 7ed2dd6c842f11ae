"""SYN cookies and RFC 6528 ISNs."""

from __future__ import annotations

from pipeline.tcp import IsnGenerator, SynCookies
from pipeline.tcp.cookies import MSS_TABLE
from tests.pipeline.tcp.tcp_harness import seeded

A, B = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 10])


def test_cookie_round_trip_encodes_mss_and_expires() -> None:
    c = SynCookies(seeded(1))
    cookie = c.make(A, 40000, B, 443, 12345, 1460, now=1000.0)
    assert c.check(A, 40000, B, 443, 12345, cookie, now=1000.0) == 1460
    assert c.check(A, 40000, B, 443, 12345, cookie, now=1000.0 + 64) == 1460  # previous tick
    assert c.check(A, 40000, B, 443, 12345, cookie, now=1000.0 + 200) is None  # expired
    assert c.check(A, 40001, B, 443, 12345, cookie, now=1000.0) is None  # other port
    assert c.check(A, 40000, B, 443, 12346, cookie, now=1000.0) is None  # other client ISN
    assert c.check(A, 40000, B, 443, 12345, cookie ^ 1, now=1000.0) is None  # tampered
    assert SynCookies(seeded(2)).check(A, 40000, B, 443, 12345, cookie, now=1000.0) is None


def test_mss_index_rounds_down() -> None:
    assert MSS_TABLE[SynCookies.mss_index(1300)] == 1220
    assert MSS_TABLE[SynCookies.mss_index(100)] == 536
    assert MSS_TABLE[SynCookies.mss_index(9000)] == 8960


def test_isn_depends_on_tuple_secret_and_clock() -> None:
    g = IsnGenerator(seeded(1))
    a = g.isn(A, 1, B, 2, now=0.0)
    assert a != g.isn(A, 3, B, 2, now=0.0)
    assert a != IsnGenerator(seeded(2)).isn(A, 1, B, 2, now=0.0)
    assert (g.isn(A, 1, B, 2, now=1.0) - a) % 2**32 == 250_000  # 4 µs clock
