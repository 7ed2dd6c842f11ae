"""``HostStack.timers_dirty``: set by whatever may move a deadline earlier (the loop then asks
``poll_at`` again), left alone by the answers the host stack gives by itself (echo, ARP)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP

from pipeline.chain import PacketChain
from tests.pipeline.test_host import (
    PEER,
    PEER_B,
    VIP,
    VIP_B,
    Recorder,
    arp_request,
    echo_request,
    make_host,
    to_us,
)


def test_echo_and_arp_answers_leave_the_deadlines_alone() -> None:
    host, counters, _ = make_host()
    for _ in range(3):
        host.receive_frame(arp_request(), 1.0)
        host.receive_frame(to_us(echo_request()), 1.0)
        assert len(host.frames_to_send(1.0)) == 2
    assert counters["icmp.echo_replied"] == 3 and counters["arp.replied"] == 3
    assert host.timers_dirty is False
    assert host.poll_at() is None


def test_a_tcp_segment_that_moved_a_deadline_earlier_marks_them_dirty() -> None:
    host, _, tcp = make_host()  # its fake says every segment moved its deadline earlier
    host.receive_frame(to_us(IP(src=PEER, dst=VIP) / TCP(sport=40000, dport=443, flags="S")), 1.0)
    assert len(tcp.received) == 1
    host.frames_to_send(1.0)  # TCP's timers_moved is read with its output
    assert host.timers_dirty is True
    host.timers_dirty = False
    assert host.poll_at() is None  # asked: TCP's flag is cleared
    host.frames_to_send(1.0)
    assert host.timers_dirty is False


def test_output_queued_behind_neighbour_resolution_marks_them_dirty() -> None:
    host, _, tcp = make_host()
    tcp.output.append((VIP_B, PEER_B, b"\x00" * 20))
    [probe] = host.frames_to_send(1.0)  # an ARP request; the packet waits, with a retry timer
    assert probe[12:14] == b"\x08\x06"
    assert host.timers_dirty is True
    assert host.poll_at() == 2.0


def test_a_neighbour_resolved_for_waiting_output_marks_them_dirty() -> None:
    host, _, tcp = make_host()
    tcp.output.append((VIP_B, PEER_B, b"\x00" * 20))
    host.frames_to_send(1.0)
    host.timers_dirty = False
    host.receive_frame(arp_request(), 1.1)  # teaches the peer's MAC: the queue is released
    assert host.timers_dirty is True
    assert host.poll_at() is None


def test_a_packet_stage_marks_them_dirty() -> None:
    host, _, _ = make_host(packet_chain=PacketChain([Recorder()]))
    host.receive_frame(to_us(echo_request()), 1.0)
    assert host.timers_dirty is True


def test_timers_mark_them_dirty() -> None:
    host, _, _ = make_host()
    host.handle_timer(5.0)
    assert host.timers_dirty is True
