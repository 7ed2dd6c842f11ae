"""Segmentation offload: with ``gso`` the TCP stack sends new data in super-segments of whole MSS
multiples, marked (``GsoBytes.gso_size``) for the port to hand to the kernel; retransmissions and
a stack without ``gso`` stay within one MSS."""

from __future__ import annotations

import collections
import ipaddress

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from pipeline.chain import PluginEnv, StreamChain
from pipeline.events import ListBus
from pipeline.host import HostStack
from pipeline.tcp.config import TcpConfig
from pipeline.tcp.stack import TcpStack
from pipeline.wire.checksum import pseudo_header_sum
from pipeline.wire.gso import ChecksumOk, GsoBytes
from plugins.apps.echo import EchoPlugin

OUR, PEER = "02:00:00:00:0a:10", "02:00:00:00:0b:01"
ADDRS = {4: ("192.0.2.10", "192.0.2.1"), 6: ("2001:db8::10", "2001:db8::1")}
DATA = bytes(range(256)) * 80  # 20480 bytes, delivered in one (offloaded) segment


def packed(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def echo_flow(version: int, gso: bool) -> tuple[list[bytes], HostStack, collections.Counter[str]]:
    """A client sends DATA in one segment; returns the frames of the echo's first flight."""
    vip, peer = ADDRS[version]
    counters: collections.Counter[str] = collections.Counter()
    chain = StreamChain([EchoPlugin(None, PluginEnv())])
    tcp = TcpStack(
        {(packed(vip), 7): chain},
        TcpConfig(),
        counters=counters,
        bus=ListBus(),
        rng=lambda n: bytes(range(n)),
        gso=gso,
    )
    host = HostStack(bytes.fromhex(OUR.replace(":", "")), [packed(vip)], counters=counters, tcp=tcp)
    L3 = IP if version == 4 else IPv6

    def send(segment: TCP, now: float) -> list[bytes]:
        host.receive_frame(raw(Ether(dst=OUR, src=PEER) / L3(src=peer, dst=vip) / segment), now)
        return host.frames_to_send(now)

    [synack] = send(TCP(sport=40000, dport=7, flags="S", seq=1000, options=[("MSS", 1400)]), 1.0)
    isn = Ether(synack)[TCP].seq
    send(TCP(sport=40000, dport=7, flags="A", seq=1001, ack=isn + 1, window=65535), 1.1)
    frames = send(
        TCP(sport=40000, dport=7, flags="PA", seq=1001, ack=isn + 1, window=65535) / DATA, 1.2
    )
    return frames, host, counters


@pytest.mark.parametrize("version", [4, 6])
def test_first_flight_is_one_super_segment_of_whole_mss(version: int) -> None:
    frames, host, counters = echo_flow(version, gso=True)
    big = [f for f in frames if isinstance(f, GsoBytes)]
    assert len(big) == 1, [len(f) for f in frames]
    seg = Ether(big[0])
    assert big[0].gso_size == 1400  # the peer's MSS (no timestamps: no option room)
    payload = bytes(seg[TCP].payload)
    assert len(payload) == 10 * 1400 and payload == DATA[: len(payload)]  # initial window
    # CHECKSUM_PARTIAL: the field holds the pseudo-header sum; the kernel completes it (and
    # pipeline.io.tap.to_vnet_gso/from_vnet tests show the completed one is the full checksum)
    tcp_len = len(big[0]) - (34 if version == 4 else 54)
    vip, peer = (packed(a) for a in ADDRS[version])
    assert seg[TCP].chksum == pseudo_header_sum(vip, peer, 6, tcp_len)
    assert not {k: v for k, v in counters.items() if k.startswith("drop.")}, counters

    # Nothing acknowledged: the retransmission is one plain MSS, not a super-segment.
    host.handle_timer(5.0)
    again = host.frames_to_send(5.0)
    assert again and not any(isinstance(f, GsoBytes) for f in again)
    assert all(len(Ether(f)[TCP].payload) <= 1400 for f in again)


def test_without_gso_every_frame_fits_the_mtu() -> None:
    frames, _, counters = echo_flow(4, gso=False)
    assert frames and all(len(f) <= 1514 and not isinstance(f, GsoBytes) for f in frames)
    assert sum(len(Ether(f)[TCP].payload) for f in frames) == 10 * 1400
    assert not {k: v for k, v in counters.items() if k.startswith("drop.")}, counters


def test_a_vouched_for_frame_skips_the_checksum_a_plain_one_does_not() -> None:
    vip, peer = ADDRS[4]
    for cls, answered in ((bytes, False), (ChecksumOk, True)):
        counters: collections.Counter[str] = collections.Counter()
        chain = StreamChain([EchoPlugin(None, PluginEnv())])
        tcp = TcpStack(
            {(packed(vip), 7): chain}, TcpConfig(), counters=counters, bus=ListBus(),
            rng=lambda n: bytes(range(n)),
        )  # fmt: skip
        host = HostStack(
            bytes.fromhex(OUR.replace(":", "")), [packed(vip)], counters=counters, tcp=tcp
        )
        syn = raw(Ether(dst=OUR, src=PEER) / IP(src=peer, dst=vip) / TCP(dport=7, flags="S"))
        bad = bytearray(syn)
        bad[50] ^= 0xFF  # TCP checksum field (14 + 20 + 16)
        host.receive_frame(cls(bad), 1.0)
        assert bool(host.frames_to_send(1.0)) is answered
        assert counters["drop.bad_checksum"] == (0 if answered else 1)
