"""Host stack, IPv4 side: ARP, ICMP echo, TCP hand-off and output, drops with reasons."""

from __future__ import annotations

import collections

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from pipeline.chain import Direction, PacketChain
from pipeline.host import HostStack
from pipeline.wire.checksum import checksum

OUR_MAC = "02:00:00:00:0a:10"
PEER_MAC = "02:00:00:00:0b:01"
VIP, PEER = "192.0.2.10", "192.0.2.1"
VIP_B, PEER_B = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 1])


class FakeTransport:
    """Records what the host stack hands to TCP; returns queued output."""

    def __init__(self) -> None:
        self.timers_moved = False  # set by every segment (as if it moved the deadline earlier)
        self.received: list[tuple[bytes, bytes, bytes, float]] = []
        self.output: list[tuple[bytes, bytes, bytes]] = []
        self.deadline: float | None = None
        self.timers: list[float] = []

    def receive_tcp(self, src: bytes, dst: bytes, segment: memoryview, now: float) -> None:
        self.received.append((src, dst, bytes(segment), now))
        self.timers_moved = True

    def take_output(self) -> list[tuple[bytes, bytes, bytes]]:
        out, self.output = self.output, []
        return out

    def poll_at(self) -> float | None:
        self.timers_moved = False
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.timers.append(now)
        self.deadline = None


def mac(s: str) -> bytes:
    return bytes.fromhex(s.replace(":", ""))


def make_host(**kw: object) -> tuple[HostStack, collections.Counter[str], FakeTransport]:
    counters: collections.Counter[str] = collections.Counter()
    tcp = FakeTransport()
    host = HostStack(mac(OUR_MAC), [VIP_B], counters=counters, tcp=tcp, **kw)  # type: ignore[arg-type]
    return host, counters, tcp


def drops(counters: collections.Counter[str]) -> dict[str, int]:
    return {k: v for k, v in counters.items() if k.startswith("drop.")}


def arp_request(target: str = VIP, sender: str = PEER, sender_mac: str = PEER_MAC) -> bytes:
    return raw(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=sender_mac)
        / ARP(op=1, hwsrc=sender_mac, psrc=sender, pdst=target)
    )


def to_us(l3: object, src_mac: str = PEER_MAC, dst_mac: str = OUR_MAC) -> bytes:
    return raw(Ether(dst=dst_mac, src=src_mac) / l3)


def echo_request(dst: str = VIP, data: bytes = b"0123456789abcdef") -> IP:
    return IP(src=PEER, dst=dst) / ICMP(id=0x4242, seq=3) / data


def tcp_segment(sport: int = 40000, dport: int = 443) -> bytes:
    return raw(IP(src=VIP, dst=PEER) / TCP(sport=sport, dport=dport, flags="SA"))[20:]


# ---- ARP -------------------------------------------------------------------------------------
def test_arp_request_for_vip_is_answered_and_sender_learned() -> None:
    host, counters, _ = make_host()
    host.receive_frame(arp_request(), 1.0)
    [frame] = host.frames_to_send(1.0)
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src, pkt.type) == (PEER_MAC, OUR_MAC, 0x0806)
    assert (pkt[ARP].op, pkt[ARP].hwsrc, pkt[ARP].psrc) == (2, OUR_MAC, VIP)
    assert (pkt[ARP].hwdst, pkt[ARP].pdst) == (PEER_MAC, PEER)
    assert host.neighbours.lookup(PEER_B) == mac(PEER_MAC)
    assert counters["arp.replied"] == 1 and counters["rx.frames"] == 1
    assert counters["tx.frames"] == 1 and not drops(counters)


def test_arp_for_another_address_is_not_answered() -> None:
    host, counters, _ = make_host()
    host.receive_frame(arp_request(target="192.0.2.99"), 1.0)
    assert host.frames_to_send(1.0) == []
    assert drops(counters) == {"drop.not_for_us": 1}
    assert PEER_B not in host.neighbours  # RFC 826: no new entry from others' requests


def test_arp_probe_is_answered_without_learning_the_zero_sender() -> None:
    host, counters, _ = make_host()
    host.receive_frame(arp_request(sender="0.0.0.0"), 1.0)
    [frame] = host.frames_to_send(1.0)
    assert Ether(frame)[ARP].pdst == "0.0.0.0"
    assert len(host.neighbours) == 0


def test_startup_frames_announce_every_vip() -> None:
    counters: collections.Counter[str] = collections.Counter()
    host = HostStack(mac(OUR_MAC), [VIP_B, bytes([192, 0, 2, 11])], counters=counters)
    frames = host.startup_frames()
    assert len(frames) == 2
    for frame, ip in zip(frames, (VIP, "192.0.2.11"), strict=True):
        pkt = Ether(frame)
        assert pkt.dst == "ff:ff:ff:ff:ff:ff"
        assert (pkt[ARP].op, pkt[ARP].psrc, pkt[ARP].pdst, pkt[ARP].hwsrc) == (1, ip, ip, OUR_MAC)


# ---- ICMP ------------------------------------------------------------------------------------
def test_echo_request_gets_a_correct_reply() -> None:
    host, counters, _ = make_host()
    host.receive_frame(to_us(echo_request()) + bytes(6), 2.0)  # with Ethernet padding
    [frame] = host.frames_to_send(2.0)
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src) == (PEER_MAC, OUR_MAC)
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].ttl) == (VIP, PEER, 64)
    assert (pkt[ICMP].type, pkt[ICMP].id, pkt[ICMP].seq) == (0, 0x4242, 3)
    assert bytes(pkt[ICMP].payload) == b"0123456789abcdef"
    recomputed = IP(raw(pkt[IP]))
    recomputed.chksum = None
    recomputed[ICMP].chksum = None
    again = IP(raw(recomputed))
    assert (again.chksum, again[ICMP].chksum) == (pkt[IP].chksum, pkt[ICMP].chksum)
    assert counters["icmp.echo_replied"] == 1
    assert host.neighbours.lookup(PEER_B) == mac(PEER_MAC)


def test_echo_request_with_ip_options_is_answered_without_them() -> None:
    from scapy.layers.inet import IPOption_RR

    host, counters, _ = make_host()
    req = IP(src=PEER, dst=VIP, options=[IPOption_RR()]) / ICMP(id=1, seq=1) / b"x"
    host.receive_frame(to_us(req), 2.0)
    [frame] = host.frames_to_send(2.0)
    assert Ether(frame)[IP].ihl == 5
    assert checksum(frame[14:34]) == 0 and checksum(frame[34:]) == 0


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (to_us(echo_request(dst="192.0.2.99")), "not_for_us"),
        (to_us(echo_request(), dst_mac="02:00:00:00:0c:01"), "not_for_us"),
        (to_us(echo_request(), dst_mac="ff:ff:ff:ff:ff:ff"), "not_for_us"),
        (to_us(echo_request(), src_mac="ff:ff:ff:ff:ff:ff"), "bad_source"),
        (to_us(IP(src="224.0.0.1", dst=VIP) / ICMP()), "bad_source"),
        (to_us(IP(src=PEER, dst=VIP) / ICMP(type=8, chksum=0x1234)), "bad_checksum"),
        (to_us(IP(src=PEER, dst=VIP, chksum=0x1234) / ICMP()), "bad_checksum"),
        (to_us(IP(src=PEER, dst=VIP, flags="MF") / ICMP()), "fragment"),
        (to_us(IP(src=PEER, dst=VIP) / ICMP(type=0)), "unsupported"),
        (to_us(IP(src=PEER, dst=VIP) / ICMP(type=13)), "unsupported"),
        (to_us(IP(src=PEER, dst=VIP) / UDP(dport=53)), "unsupported"),
        (to_us(IP(src=PEER, dst=VIP, proto=47) / b"gre"), "unsupported"),
        (to_us(Dot1Q(vlan=5) / echo_request()), "unsupported"),
        (raw(Ether(dst=OUR_MAC, src=PEER_MAC, type=0x88B5) / bytes(46)), "unsupported"),
        (to_us(echo_request())[:30], "truncated"),
        (mac(OUR_MAC) + mac(PEER_MAC) + b"\x08\x00" + b"\x46" + bytes(40), "bad_length"),
        (mac(OUR_MAC) + mac(PEER_MAC) + b"\x08\x06" + b"\x00\x01\x08\x00\x06", "truncated"),
        (mac(OUR_MAC) + mac(PEER_MAC) + b"\x86\xdd" + b"\x60" + bytes(20), "truncated"),
        (to_us(IP(src=PEER, dst=VIP) / UDP(dport=53, chksum=7) / b"q"), "bad_checksum"),
    ],
)
def test_dropped_frames_are_counted_with_their_reason(frame: bytes, reason: str) -> None:
    host, counters, tcp = make_host()
    host.receive_frame(frame, 1.0)
    assert host.frames_to_send(1.0) == []
    assert drops(counters) == {f"drop.{reason}": 1}
    assert counters["rx.frames"] == 1 and tcp.received == []


# ---- TCP hand-off ----------------------------------------------------------------------------
def test_tcp_for_a_vip_goes_to_the_transport() -> None:
    host, counters, tcp = make_host()
    seg = raw(IP(src=PEER, dst=VIP) / TCP(sport=40000, dport=443, flags="S"))
    host.receive_frame(to_us(IP(seg)) + bytes(4), 3.0)
    assert tcp.received == [(PEER_B, VIP_B, seg[20:], 3.0)]
    assert not drops(counters)


def test_tcp_without_a_transport_is_dropped() -> None:
    counters: collections.Counter[str] = collections.Counter()
    host = HostStack(mac(OUR_MAC), [VIP_B], counters=counters)
    host.receive_frame(to_us(IP(src=PEER, dst=VIP) / TCP()), 1.0)
    assert drops(counters) == {"drop.no_transport": 1}


def test_tcp_output_to_a_known_neighbour_is_framed() -> None:
    host, counters, tcp = make_host()
    host.receive_frame(arp_request(), 1.0)
    host.frames_to_send(1.0)
    segment = tcp_segment()
    tcp.output.append((VIP_B, PEER_B, segment))
    [frame] = host.frames_to_send(1.5)
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src) == (PEER_MAC, OUR_MAC)
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].proto, pkt[IP].flags) == (VIP, PEER, 6, "DF")
    assert raw(pkt[IP])[20:] == segment
    assert checksum(frame[14:34]) == 0


def test_tcp_output_waits_for_arp_then_is_released_in_order() -> None:
    host, counters, tcp = make_host()
    segs = [tcp_segment(sport=40000 + i) for i in range(3)]
    tcp.output.extend((VIP_B, PEER_B, s) for s in segs)
    [probe] = host.frames_to_send(1.0)
    pkt = Ether(probe)
    assert pkt.dst == "ff:ff:ff:ff:ff:ff"
    assert (pkt[ARP].op, pkt[ARP].psrc, pkt[ARP].pdst, pkt[ARP].hwdst) == (
        1,
        VIP,
        PEER,
        "00:00:00:00:00:00",
    )
    assert host.poll_at() == pytest.approx(2.0)
    reply = Ether(dst=OUR_MAC, src=PEER_MAC) / ARP(
        op=2, hwsrc=PEER_MAC, psrc=PEER, hwdst=OUR_MAC, pdst=VIP
    )
    host.receive_frame(raw(reply), 1.2)
    frames = host.frames_to_send(1.2)
    assert [raw(Ether(f)[IP])[20:] for f in frames] == segs
    assert all(Ether(f).dst == PEER_MAC for f in frames)
    assert host.poll_at() is None and not drops(counters)


def test_unanswered_arp_is_retried_then_queued_packets_dropped() -> None:
    host, counters, tcp = make_host()
    for i in range(20):
        tcp.output.append((VIP_B, PEER_B, tcp_segment(sport=1000 + i)))
    assert len(host.frames_to_send(0.0)) == 1  # one ARP request
    assert counters["drop.queue_full"] == 4  # 16 queued per neighbour
    probes = 1
    now = 0.0
    for _ in range(10):
        deadline = host.poll_at()
        if deadline is None:
            break
        now = deadline
        host.handle_timer(now)
        probes += sum(1 for f in host.frames_to_send(now) if ARP in Ether(f))
    assert probes == 3
    assert counters["drop.unresolved"] == 16
    assert host.poll_at() is None


def test_pending_neighbours_are_bounded() -> None:
    host, counters, tcp = make_host()
    for i in range(70):
        tcp.output.append((VIP_B, bytes([198, 51, 100, i + 1]), tcp_segment()))
    assert len(host.frames_to_send(0.0)) == 64
    assert counters["drop.pending_full"] == 6


def test_output_from_a_foreign_source_or_too_big_is_dropped() -> None:
    host, counters, tcp = make_host()
    host.receive_frame(arp_request(), 0.0)
    host.frames_to_send(0.0)
    tcp.output.append((bytes([192, 0, 2, 77]), PEER_B, tcp_segment()))
    tcp.output.append((VIP_B, PEER_B, bytes(1481)))
    assert host.frames_to_send(0.0) == []
    assert drops(counters) == {"drop.bad_source": 1, "drop.too_big": 1}


def test_timers_delegate_to_the_transport() -> None:
    host, _, tcp = make_host()
    tcp.deadline = 5.0
    assert host.poll_at() == 5.0
    host.handle_timer(4.0)
    assert tcp.timers == []
    host.handle_timer(5.0)
    assert tcp.timers == [5.0] and host.poll_at() is None


# ---- neighbours and packet stages ------------------------------------------------------------
def test_neighbour_table_is_bounded_lru() -> None:
    host, counters, _ = make_host(neighbour_limit=4)
    peers = [f"192.0.2.{i}" for i in range(100, 106)]
    for i, peer in enumerate(peers):
        frame = raw(
            Ether(dst=OUR_MAC, src=f"02:00:00:00:0d:{i:02x}") / IP(src=peer, dst=VIP) / ICMP()
        )
        host.receive_frame(frame, float(i))
        if i == 3:
            host.neighbours.lookup(bytes([192, 0, 2, 100]))  # refresh the oldest
    assert len(host.neighbours) == 4
    assert counters["neighbour.evicted"] == 2
    known = {bytes(ip) for ip, _ in host.neighbours.items()}
    assert bytes([192, 0, 2, 100]) in known and bytes([192, 0, 2, 101]) not in known


class Recorder:
    def __init__(self, verdict: bool = True, drop_dir: Direction | None = None) -> None:
        self.seen: list[tuple[Direction, bytes]] = []
        self.drop_dir = drop_dir

    def on_frame(self, frame: bytes | memoryview, direction: Direction, now: float) -> bool:
        self.seen.append((direction, bytes(frame)))
        return direction != self.drop_dir


@pytest.mark.parametrize("drop_dir", [None, "in", "out"])
def test_packet_stages_see_and_may_drop_frames(drop_dir: Direction | None) -> None:
    rec = Recorder(drop_dir=drop_dir)
    host, counters, _ = make_host(packet_chain=PacketChain([rec]))
    request = arp_request()
    host.receive_frame(request, 1.0)
    out = host.frames_to_send(1.0)
    if drop_dir == "in":
        assert rec.seen == [("in", request)] and out == []
    else:
        assert rec.seen[0] == ("in", request) and rec.seen[1][0] == "out"
        assert out == ([] if drop_dir == "out" else [rec.seen[1][1]])
    assert counters["drop.stage"] == (0 if drop_dir is None else 1)


def test_malformed_transport_output_costs_only_itself() -> None:
    host, counters, tcp = make_host()
    host.receive_frame(arp_request(), 0.0)
    host.frames_to_send(0.0)
    good = tcp_segment()
    tcp.output.extend([(VIP_B, PEER_B), (VIP_B, PEER_B, good), (VIP_B, PEER_B, good)])  # type: ignore[list-item]
    frames = host.frames_to_send(0.0)
    assert len(frames) == 2 and counters["drop.internal"] == 1
    idents = [Ether(f)[IP].id for f in frames]
    assert idents[1] == (idents[0] + 1) & 0xFFFF
