"""The host stack never raises: random bytes and random mutations of valid frames are either
answered or dropped with a counted reason (never ``internal``, the bug bucket)."""

from __future__ import annotations

import collections

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether

from pipeline.host import HostStack
from pipeline.wire.drops import DROP_REASONS

OUR, PEER = "02:00:00:00:0a:10", "02:00:00:00:0b:01"
V4, P4, V6, P6 = "192.0.2.10", "192.0.2.1", "2001:db8::10", "2001:db8::1"
E = Ether(dst=OUR, src=PEER)

VALID = [
    raw(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER) / ARP(op=1, hwsrc=PEER, psrc=P4, pdst=V4)),
    raw(E / ARP(op=2, hwsrc=PEER, psrc=P4, hwdst=OUR, pdst=V4)),
    raw(E / IP(src=P4, dst=V4) / ICMP(id=1, seq=2) / b"abcdefgh"),
    raw(E / IP(src=P4, dst=V4) / TCP(sport=1234, dport=443, flags="S")),
    raw(E / IP(src=P4, dst=V4) / UDP(sport=1, dport=2) / b"x"),
    raw(E / Dot1Q(vlan=3) / IP(src=P4, dst=V4) / ICMP()),
    raw(
        Ether(dst="33:33:ff:00:00:10", src=PEER)
        / IPv6(src=P6, dst="ff02::1:ff00:10", hlim=255)
        / ICMPv6ND_NS(tgt=V6)
        / ICMPv6NDOptSrcLLAddr(lladdr=PEER)
    ),
    raw(
        E
        / IPv6(src=P6, dst=V6, hlim=255)
        / ICMPv6ND_NA(tgt=P6, S=1, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=PEER)
    ),
    raw(E / IPv6(src=P6, dst=V6) / ICMPv6EchoRequest(id=1, seq=1, data=b"hi")),
    raw(E / IPv6(src=P6, dst=V6) / IPv6ExtHdrDestOpt() / TCP(sport=9, dport=443, flags="S")),
]


class EchoTransport:
    """Answers every segment with one segment back, so output paths run too."""

    timers_moved = True  # every segment may move its deadline

    def __init__(self) -> None:
        self.out: list[tuple[bytes, bytes, bytes]] = []

    def receive_tcp(self, src: bytes, dst: bytes, segment: memoryview, now: float) -> None:
        self.out.append((dst, src, bytes(segment[:40])))

    def take_output(self) -> list[tuple[bytes, bytes, bytes]]:
        out, self.out = self.out, []
        return out

    def poll_at(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None


def make_host() -> tuple[HostStack, collections.Counter[str]]:
    counters: collections.Counter[str] = collections.Counter()
    vips = [bytes([192, 0, 2, 10]), bytes.fromhex("20010db8000000000000000000000010")]
    host = HostStack(
        bytes.fromhex(OUR.replace(":", "")),
        vips,
        counters=counters,
        tcp=EchoTransport(),
        neighbour_limit=4,
    )
    return host, counters


def check(host: HostStack, counters: collections.Counter[str], n: int) -> None:
    assert counters["drop.internal"] == 0, counters
    assert counters["rx.frames"] == n
    for key in counters:
        if key.startswith("drop."):
            assert key[5:] in DROP_REASONS, key


def test_valid_corpus_is_handled_without_internal_errors() -> None:
    host, counters = make_host()
    for i, frame in enumerate(VALID):
        host.receive_frame(frame, float(i))
        host.frames_to_send(float(i))
    check(host, counters, len(VALID))
    assert counters["icmp.echo_replied"] == 2 and counters["arp.replied"] == 1
    assert counters["nd.replied"] == 1


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=5))
def test_random_bytes_never_raise(frames: list[bytes]) -> None:
    host, counters = make_host()
    for i, frame in enumerate(frames):
        host.receive_frame(frame, float(i))
        host.frames_to_send(float(i))
        host.handle_timer(float(i) + 5.0)
    check(host, counters, len(frames))


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 400), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 400), st.just(0)),
    st.tuples(st.just("extend"), st.integers(1, 64), st.integers(0, 255)),
    st.tuples(st.just("set"), st.integers(0, 400), st.integers(0, 255)),
)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(VALID), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_valid_frames_never_raise(
    frame: bytes, mutations: list[tuple[str, int, int]]
) -> None:
    data = bytearray(frame)
    for kind, pos, value in mutations:
        if kind == "flip" and data:
            data[pos % len(data)] ^= value
        elif kind == "set" and data:
            data[pos % len(data)] = value
        elif kind == "cut":
            del data[pos % (len(data) + 1) :]
        elif kind == "extend":
            data += bytes([value]) * pos
    host, counters = make_host()
    host.receive_frame(bytes(data), 1.0)
    host.receive_frame(memoryview(bytes(data)), 2.0)
    host.frames_to_send(2.0)
    check(host, counters, 2)
