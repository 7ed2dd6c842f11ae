"""Host stack, IPv6 side: Neighbor Discovery (NS/NA, DAD), ICMPv6 echo, TCP output resolution."""

from __future__ import annotations

import collections
import ipaddress

import pytest
from scapy.compat import raw
from scapy.layers.inet import TCP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
)
from scapy.layers.l2 import Ether

from pipeline.host import HostStack
from pipeline.wire.checksum import checksum, pseudo_header_sum

OUR_MAC = "02:00:00:00:0a:10"
PEER_MAC = "02:00:00:00:0b:01"
VIP, PEER = "2001:db8::10", "2001:db8::1"
VIP_B = bytes.fromhex("20010db8000000000000000000000010")
PEER_B = bytes.fromhex("20010db8000000000000000000000001")
SOLICITED = "ff02::1:ff00:10"
SOLICITED_MAC = "33:33:ff:00:00:10"


class FakeTransport:
    timers_moved = True  # every segment may move its deadline

    def __init__(self) -> None:
        self.received: list[tuple[bytes, bytes, bytes]] = []
        self.output: list[tuple[bytes, bytes, bytes]] = []

    def receive_tcp(self, src: bytes, dst: bytes, segment: memoryview, now: float) -> None:
        self.received.append((src, dst, bytes(segment)))

    def take_output(self) -> list[tuple[bytes, bytes, bytes]]:
        out, self.output = self.output, []
        return out

    def poll_at(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None


def mac(s: str) -> bytes:
    return bytes.fromhex(s.replace(":", ""))


def make_host() -> tuple[HostStack, collections.Counter[str], FakeTransport]:
    counters: collections.Counter[str] = collections.Counter()
    tcp = FakeTransport()
    return HostStack(mac(OUR_MAC), [VIP_B], counters=counters, tcp=tcp), counters, tcp


def drops(counters: collections.Counter[str]) -> dict[str, int]:
    return {k: v for k, v in counters.items() if k.startswith("drop.")}


def ns_frame(src: str = PEER, dst: str = SOLICITED, hlim: int = 255, option: bool = True) -> bytes:
    eth_dst = SOLICITED_MAC if dst.startswith("ff") else OUR_MAC
    pkt = (
        Ether(dst=eth_dst, src=PEER_MAC) / IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(tgt=VIP)
    )
    if option:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
    return raw(pkt)


def icmpv6_checksum_ok(frame: bytes) -> bool:
    ip = frame[14:54]
    msg = frame[54:]
    return checksum(msg, pseudo_header_sum(ip[8:24], ip[24:40], 58, len(msg))) == 0


@pytest.mark.parametrize("dst", [SOLICITED, VIP])
def test_ns_gets_a_solicited_na(dst: str) -> None:
    host, counters, _ = make_host()
    host.receive_frame(ns_frame(dst=dst), 1.0)
    [frame] = host.frames_to_send(1.0)
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src) == (PEER_MAC, OUR_MAC)
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].hlim) == (VIP, PEER, 255)
    na = pkt[ICMPv6ND_NA]
    assert (na.tgt, na.R, na.S, na.O) == (VIP, 0, 1, 1)
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == OUR_MAC
    assert icmpv6_checksum_ok(frame)
    again = IPv6(raw(pkt[IPv6]))
    again[ICMPv6ND_NA].cksum = None
    assert IPv6(raw(again))[ICMPv6ND_NA].cksum == na.cksum
    assert host.neighbours.lookup(PEER_B) == mac(PEER_MAC)
    assert counters["nd.replied"] == 1 and not drops(counters)


def test_dad_ns_is_defended_to_all_nodes() -> None:
    host, counters, _ = make_host()
    host.receive_frame(ns_frame(src="::", option=False), 1.0)
    [frame] = host.frames_to_send(1.0)
    pkt = Ether(frame)
    assert pkt.dst == "33:33:00:00:00:01"
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].hlim) == (VIP, "ff02::1", 255)
    na = pkt[ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (0, 0, 1)
    assert icmpv6_checksum_ok(frame)
    assert len(host.neighbours) == 0


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (ns_frame(hlim=64), "bad_hop_limit"),
        (ns_frame(src="::", option=True), "malformed"),
        (
            raw(
                Ether(dst=SOLICITED_MAC, src=PEER_MAC)
                / IPv6(src=PEER, dst=SOLICITED, hlim=255)
                / ICMPv6ND_NS(tgt="2001:db8::99")
            ),
            "not_for_us",
        ),
        (
            raw(
                Ether(dst="33:33:ff:00:00:99", src=PEER_MAC)
                / IPv6(src=PEER, dst="ff02::1:ff00:99", hlim=255)
                / ICMPv6ND_NS(tgt="2001:db8::99")
            ),
            "not_for_us",
        ),
        (
            raw(
                Ether(dst=OUR_MAC, src=PEER_MAC)
                / IPv6(src=PEER, dst=VIP)
                / ICMPv6EchoRequest(id=1, seq=1, cksum=0x1234)
            ),
            "bad_checksum",
        ),
        (
            raw(Ether(dst=OUR_MAC, src=PEER_MAC) / IPv6(src=PEER, dst="2001:db8::99") / TCP()),
            "not_for_us",
        ),
        (
            raw(Ether(dst=OUR_MAC, src=PEER_MAC) / IPv6(src="ff02::1", dst=VIP) / TCP()),
            "bad_source",
        ),
    ],
)
def test_ipv6_drops(frame: bytes, reason: str) -> None:
    host, counters, _ = make_host()
    host.receive_frame(frame, 1.0)
    assert host.frames_to_send(1.0) == []
    assert drops(counters) == {f"drop.{reason}": 1}


def test_icmpv6_echo_reply() -> None:
    host, counters, _ = make_host()
    req = (
        Ether(dst=OUR_MAC, src=PEER_MAC)
        / IPv6(src=PEER, dst=VIP)
        / ICMPv6EchoRequest(id=7, seq=9, data=b"payload!")
    )
    host.receive_frame(raw(req), 1.0)
    [frame] = host.frames_to_send(1.0)
    pkt = Ether(frame)
    assert (pkt.dst, pkt[IPv6].src, pkt[IPv6].dst) == (PEER_MAC, VIP, PEER)
    reply = pkt[ICMPv6EchoReply]
    assert (reply.id, reply.seq, reply.data) == (7, 9, b"payload!")
    assert icmpv6_checksum_ok(frame)
    assert counters["icmp.echo_replied"] == 1


def test_tcp_over_ipv6_in_and_out_with_neighbour_solicitation() -> None:
    host, counters, tcp = make_host()
    seg = raw(IPv6(src=PEER, dst=VIP) / TCP(sport=5000, dport=443, flags="S"))[40:]
    reply_seg = raw(IPv6(src=VIP, dst=PEER) / TCP(sport=443, dport=5000, flags="SA"))[40:]
    tcp.output.append((VIP_B, PEER_B, reply_seg))
    [probe] = host.frames_to_send(0.0)
    ns = Ether(probe)
    assert (ns.dst, ns[IPv6].dst, ns[IPv6].hlim) == ("33:33:ff:00:00:01", "ff02::1:ff00:1", 255)
    assert ns[ICMPv6ND_NS].tgt == PEER and ns[ICMPv6NDOptSrcLLAddr].lladdr == OUR_MAC
    assert icmpv6_checksum_ok(probe)
    na = (
        Ether(dst=OUR_MAC, src=PEER_MAC)
        / IPv6(src=PEER, dst=VIP, hlim=255)
        / ICMPv6ND_NA(tgt=PEER, S=1, O=1, R=0)
        / ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC)
    )
    host.receive_frame(raw(na), 0.1)
    [out] = host.frames_to_send(0.1)
    pkt = Ether(out)
    assert (pkt.dst, pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].nh) == (PEER_MAC, VIP, PEER, 6)
    assert raw(pkt[IPv6])[40:] == reply_seg
    syn = IPv6(src=PEER, dst=VIP) / TCP(sport=5000, dport=443, flags="S")
    host.receive_frame(raw(Ether(dst=OUR_MAC, src=PEER_MAC) / syn), 0.2)
    assert tcp.received == [(PEER_B, VIP_B, seg)]
    assert not drops(counters), counters


def test_unsolicited_na_at_startup() -> None:
    host, _, _ = make_host()
    [frame] = host.startup_frames()
    pkt = Ether(frame)
    assert (pkt.dst, pkt[IPv6].dst, pkt[IPv6].hlim) == ("33:33:00:00:00:01", "ff02::1", 255)
    na = pkt[ICMPv6ND_NA]
    assert (na.tgt, na.R, na.S, na.O) == (VIP, 0, 0, 1)
    assert icmpv6_checksum_ok(frame)


def test_unsolicited_na_only_refreshes_known_neighbours() -> None:
    host, _, _ = make_host()
    na = (
        Ether(dst="33:33:00:00:00:01", src=PEER_MAC)
        / IPv6(src=PEER, dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(tgt=PEER, S=0, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC)
    )
    host.receive_frame(raw(na), 0.0)
    assert PEER_B not in host.neighbours
    host.receive_frame(ns_frame(), 0.0)
    moved = na.copy()
    moved[ICMPv6NDOptDstLLAddr].lladdr = "02:00:00:00:0b:02"
    host.receive_frame(raw(moved), 0.0)
    assert host.neighbours.lookup(PEER_B) == mac("02:00:00:00:0b:02")


def test_icmpv6_echo_behind_an_extension_header_takes_the_general_path() -> None:
    host, counters, _ = make_host()
    req = (
        Ether(dst=OUR_MAC, src=PEER_MAC)
        / IPv6(src=PEER, dst=VIP)
        / IPv6ExtHdrDestOpt()
        / ICMPv6EchoRequest(id=7, seq=9, data=b"ext")
    )
    host.receive_frame(raw(req), 1.0)
    [frame] = host.frames_to_send(1.0)
    pkt = Ether(frame)
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].nh) == (VIP, PEER, 58)
    assert pkt[ICMPv6EchoReply].data == b"ext" and icmpv6_checksum_ok(frame)
    assert counters["icmp.echo_replied"] == 1


def test_vips_sharing_a_solicited_node_group_are_both_answered() -> None:
    counters: collections.Counter[str] = collections.Counter()
    other = "2001:db8:1::10"  # same last 24 bits as VIP: same solicited-node group
    host = HostStack(mac(OUR_MAC), [VIP_B, packed6(other)], counters=counters)
    for target in (VIP, other):
        ns = (
            Ether(dst=SOLICITED_MAC, src=PEER_MAC)
            / IPv6(src=PEER, dst=SOLICITED, hlim=255)
            / ICMPv6ND_NS(tgt=target)
            / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
        )
        host.receive_frame(raw(ns), 1.0)
        [frame] = host.frames_to_send(1.0)
        assert Ether(frame)[ICMPv6ND_NA].tgt == target
    assert counters["nd.replied"] == 2 and not drops(counters)


def packed6(a: str) -> bytes:
    return ipaddress.IPv6Address(a).packed
