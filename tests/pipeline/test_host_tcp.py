"""The host stack with the real TCP stack behind it (the TransportHandler contract), over IPv4 and
IPv6: a scapy client connects to an echo virtual server and gets its bytes back."""

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
from plugins.apps.echo import EchoPlugin

OUR, PEER = "02:00:00:00:0a:10", "02:00:00:00:0b:01"
ADDRS = {4: ("192.0.2.10", "192.0.2.1"), 6: ("2001:db8::10", "2001:db8::1")}


def packed(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


@pytest.mark.parametrize("version", [4, 6])
def test_echo_over_tcp_through_the_host_stack(version: int) -> None:
    vip, peer = ADDRS[version]
    counters: collections.Counter[str] = collections.Counter()
    chain = StreamChain([EchoPlugin(None, PluginEnv())])
    tcp = TcpStack(
        {(packed(vip), 7): chain},
        TcpConfig(),
        counters=counters,
        bus=ListBus(),
        rng=lambda n: bytes(range(n)),
    )
    host = HostStack(bytes.fromhex(OUR.replace(":", "")), [packed(vip)], counters=counters, tcp=tcp)
    L3 = IP if version == 4 else IPv6

    def send(segment: TCP, now: float) -> list[Ether]:
        host.receive_frame(raw(Ether(dst=OUR, src=PEER) / L3(src=peer, dst=vip) / segment), now)
        return [Ether(f) for f in host.frames_to_send(now)]

    [synack] = send(TCP(sport=40000, dport=7, flags="S", seq=1000), 1.0)
    assert (synack.dst, synack.src) == (PEER, OUR)
    assert (synack[L3].src, synack[L3].dst) == (vip, peer)
    assert synack[TCP].flags == "SA" and synack[TCP].ack == 1001
    check = synack[L3].copy()
    check[TCP].chksum = None
    assert L3(raw(check))[TCP].chksum == synack[TCP].chksum
    server_isn = synack[TCP].seq
    send(TCP(sport=40000, dport=7, flags="A", seq=1001, ack=server_isn + 1), 1.1)
    replies = send(
        TCP(sport=40000, dport=7, flags="PA", seq=1001, ack=server_isn + 1) / b"hello", 1.2
    )
    data = b"".join(bytes(r[TCP].payload) for r in replies)
    assert data == b"hello", [r.summary() for r in replies]
    assert all(r.dst == PEER for r in replies)
    assert not {k: v for k, v in counters.items() if k.startswith("drop.")}, counters
