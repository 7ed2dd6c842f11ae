"""ESTABLISHED data path: delivery, ACK policy, out-of-order, overlaps, SACK, windows,
retransmission and fast retransmit (packet level)."""

from __future__ import annotations

from typing import Any

from pipeline.tcp import TcpConfig
from pipeline.wire.tcp import ACK, PSH, RST, SYN
from tests.pipeline.tcp.tcp_harness import StackDriver

C = 1000  # client ISN


def establish(d: StackDriver, **opts: Any) -> int:
    """Handshake; returns the server's next sequence number."""
    sa = d.handshake(isn=C, **opts)
    return sa.seq + 1


def test_data_delivered_once_and_ack_delayed_40ms() -> None:
    d = StackDriver()
    s = establish(d)
    assert d.send(seq=C + 1, ack=s, flags=ACK | PSH, payload=b"hello") == []
    assert bytes(d.rec.data) == b"hello"
    assert d.tick(0.039) == []
    (ack,) = d.tick(0.002)
    assert (ack.flags, ack.seq, ack.ack, ack.payload) == (ACK, s, C + 6, b"")
    assert d.tick(1.0) == []


def test_every_second_segment_acked_at_once() -> None:
    d = StackDriver()
    s = establish(d)
    assert d.send(seq=C + 1, ack=s, flags=ACK, payload=b"a" * 100) == []
    (ack,) = d.send(seq=C + 101, ack=s, flags=ACK, payload=b"b" * 100)
    assert ack.ack == C + 201


def test_out_of_order_acked_at_once_with_sack_and_delivered_in_order() -> None:
    d = StackDriver()
    s = establish(d, sack_permitted=True)
    (ack,) = d.send(seq=C + 101, ack=s, flags=ACK, payload=b"b" * 100)
    assert ack.ack == C + 1 and ack.sack_blocks == ((C + 101, C + 201),)
    (ack,) = d.send(seq=C + 301, ack=s, flags=ACK, payload=b"d" * 100)
    assert ack.sack_blocks == ((C + 301, C + 401), (C + 101, C + 201))  # most recent first
    assert d.rec.data == b""
    (ack,) = d.send(seq=C + 1, ack=s, flags=ACK, payload=b"a" * 100)  # fills the first hole
    assert ack.ack == C + 201 and ack.sack_blocks == ((C + 301, C + 401),)
    assert bytes(d.rec.data) == b"a" * 100 + b"b" * 100
    (ack,) = d.send(seq=C + 201, ack=s, flags=ACK, payload=b"c" * 100)
    assert ack.ack == C + 401 and ack.sack_blocks == ()
    assert bytes(d.rec.data) == b"a" * 100 + b"b" * 100 + b"c" * 100 + b"d" * 100
    ev = d.stack._flows[next(iter(d.stack._flows))].ep.stats()
    assert ev["out_of_order"] == 2


def test_no_sack_blocks_without_sack_permitted() -> None:
    d = StackDriver()
    s = establish(d)
    (ack,) = d.send(seq=C + 101, ack=s, flags=ACK, payload=b"b" * 100)
    assert ack.ack == C + 1 and ack.sack_blocks == ()


def test_overlap_with_same_data_is_not_an_anomaly() -> None:
    d = StackDriver()
    s = establish(d)
    d.send(seq=C + 11, ack=s, flags=ACK, payload=b"0123456789")
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"abcdefghij0123")
    (ack,) = d.send(seq=C + 1, ack=s, flags=ACK, payload=b"abcdefghij")  # old duplicate
    assert ack.ack == C + 21
    assert bytes(d.rec.data) == b"abcdefghij0123456789"
    assert d.bus.of("tcp.anomaly") == [] and d.counters["tcp.overlap_conflicts"] == 0


def test_overlap_with_different_data_keeps_first_and_reports() -> None:
    d = StackDriver()
    s = establish(d)
    d.send(seq=C + 11, ack=s, flags=ACK, payload=b"0123456789")
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"abcdefghijXXXX")  # rewrites 11..15
    assert bytes(d.rec.data) == b"abcdefghij0123456789"
    (ev,) = d.bus.of("tcp.anomaly")
    assert ev == {"conn": 1, "kind": "overlap_conflict", "seq": C + 11, "length": 4}
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"ABCDE")  # retransmission differing from history
    assert d.bus.of("tcp.anomaly")[1]["seq"] == C + 1
    assert bytes(d.rec.data) == b"abcdefghij0123456789"
    assert d.counters["tcp.overlap_conflicts"] == 2
    d.send(seq=C + 21, ack=s, flags=RST)  # the close event carries the count
    closed = d.bus.of("tcp.flow")[-1]
    assert closed["reason"] == "rst_received" and closed["overlap_conflicts"] == 2


def test_segment_outside_window_answered_with_ack_not_delivered() -> None:
    d = StackDriver(TcpConfig(recv_buffer=4096))
    s = establish(d)
    (ack,) = d.send(seq=C + 1 + 5000, ack=s, flags=ACK, payload=b"x" * 10)
    assert ack.ack == C + 1 and d.rec.data == b""


def test_echo_reply_piggybacks_the_ack() -> None:
    d = StackDriver(echo=True)
    s = establish(d)
    (seg,) = d.send(seq=C + 1, ack=s, flags=ACK | PSH, payload=b"ping")
    assert (seg.seq, seg.ack, seg.flags, seg.payload) == (s, C + 5, ACK | PSH, b"ping")
    assert d.send(seq=C + 5, ack=s + 4, flags=ACK) == []


def test_peer_mss_limits_segment_size() -> None:
    d = StackDriver(echo=True)
    s = establish(d, mss=500)
    out = d.send(seq=C + 1, ack=s, flags=ACK, payload=b"z" * 1200)
    assert [len(x.payload) for x in out] == [500, 500, 200]
    assert [x.seq for x in out] == [s, s + 500, s + 1000]


def test_retransmission_timeout_and_backoff() -> None:
    d = StackDriver(TcpConfig(rto_initial=1.0, rto_min=0.2), echo=True)
    s = establish(d)  # handshake RTT sample of 0 s: RTO = rto_min
    (seg,) = d.send(seq=C + 1, ack=s, flags=ACK, payload=b"data")
    # tail loss probe after 2 SRTT + the peer's delayed-ACK allowance (one segment in flight)
    assert d.tick(0.039) == []
    (probe,) = d.tick(0.002)
    assert (probe.seq, probe.payload) == (s, b"data")
    assert d.counters["tcp.tail_loss_probes"] == 1
    assert d.tick(0.15) == []
    (r1,) = d.tick(0.02)
    assert (r1.seq, r1.payload) == (s, b"data")
    assert d.tick(0.38) == []
    (r2,) = d.tick(0.02)
    assert r2.seq == s and d.counters["tcp.retransmits"] == 3
    assert d.send(seq=C + 5, ack=s + 4, flags=ACK) == []
    assert d.tick(5.0) == []  # acknowledged: no more retransmissions


def test_give_up_after_max_retries_aborts_with_event() -> None:
    d = StackDriver(TcpConfig(max_retries=3, rto_min=0.2), echo=True)
    s = establish(d)
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"data")
    out = d.tick(0.2 + 0.4 + 0.8)
    assert [x.payload for x in out] == [b"data"] * 4  # a tail loss probe, then 3 RTOs
    (rst,) = d.tick(1.6)
    assert rst.flags == RST and rst.seq == s + 4
    assert d.rec.closed == ["timeout"]
    closed = d.bus.of("tcp.flow")[-1]
    assert closed["action"] == "closed" and closed["reason"] == "timeout"
    assert closed["retransmits"] == 4 and d.counters["tcp.give_ups"] == 1
    assert len(d.stack) == 0


def test_fast_retransmit_on_three_duplicate_acks() -> None:
    d = StackDriver(echo=True)
    s = establish(d, mss=100)
    out = d.send(seq=C + 1, ack=s, flags=ACK, payload=b"q" * 500)
    assert len(out) == 5
    for _ in range(2):
        assert d.send(seq=C + 501, ack=s + 100, flags=ACK) in ([], [])
    assert d.send(seq=C + 501, ack=s + 100, flags=ACK) == []  # first dup ack was the new ack
    (rtx,) = d.send(seq=C + 501, ack=s + 100, flags=ACK)
    assert rtx.seq == s + 100 and len(rtx.payload) == 100
    assert d.counters["tcp.fast_retransmits"] == 1


def test_sack_blocks_from_the_peer_trigger_fast_retransmit() -> None:
    d = StackDriver(echo=True)
    s = establish(d, mss=100, sack_permitted=True)
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"q" * 500)
    (rtx, *_rest) = d.send(
        seq=C + 501, ack=s, flags=ACK, payload=b"more", sack_blocks=((s + 100, s + 400),)
    )
    assert rtx.seq == s and len(rtx.payload) == 100
    assert d.counters["tcp.fast_retransmits"] == 1


def test_window_scaling_applies_to_the_peer_window() -> None:
    d = StackDriver(echo=True)
    sa = d.send(seq=C, flags=SYN, wscale=2, window=100)[0]
    s = sa.seq + 1
    d.send(seq=C + 1, ack=s, flags=ACK, window=100)  # 100 << 2 = 400 bytes
    out = d.send(seq=C + 1, ack=s, flags=ACK, window=100, payload=b"w" * 1000)
    assert sum(len(x.payload) for x in out) == 400
    out = d.send(seq=C + 1001, ack=s + 400, flags=ACK, window=1000)
    assert sum(len(x.payload) for x in out) == 600


def test_our_window_is_scaled_when_negotiated() -> None:
    d = StackDriver(TcpConfig(recv_buffer=1 << 20))
    sa = d.send(seq=C, flags=SYN, wscale=0)[0]
    assert sa.wscale == 5
    d.send(seq=C + 1, ack=sa.seq + 1, flags=ACK)
    out = d.send(seq=C + 1, ack=sa.seq + 1, flags=ACK, payload=b"a") + d.tick(0.05)
    assert out[-1].ack == C + 2 and out[-1].window << 5 == 1 << 20


def test_zero_window_probe_then_resume() -> None:
    d = StackDriver(TcpConfig(rto_min=0.2), echo=True)
    s = establish(d)
    assert d.send(seq=C + 1, ack=s, flags=ACK, window=0, payload=b"hold") == [] or True
    d.tick(0.05)
    probe_out = d.tick(0.2)
    (probe,) = probe_out
    assert probe.seq == s - 1 and probe.payload == b""
    assert d.counters["tcp.window_probes"] == 1
    (data,) = d.send(seq=C + 5, ack=s, flags=ACK, window=1000)
    assert data.payload == b"hold" and data.seq == s


def test_no_silly_window_segments() -> None:
    d = StackDriver(echo=True)
    s = establish(d, mss=1000)
    d.send(seq=C + 1, ack=s, flags=ACK, window=2000)
    out = d.send(seq=C + 1, ack=s, flags=ACK, window=2000, payload=b"s" * 3000)
    assert [len(x.payload) for x in out] == [1000, 1000]
    # the peer opens its window by 10 bytes only: too small to send, wait for more
    assert [x for x in d.send(seq=C + 3001, ack=s + 2000, flags=ACK, window=10) if x.payload] == []
    out = d.send(seq=C + 3001, ack=s + 2000, flags=ACK, window=1500)
    assert [len(x.payload) for x in out] == [1000]


def test_sws_override_timer_sends_into_a_small_window_that_stays_small() -> None:
    d = StackDriver(TcpConfig(rto_min=0.2), echo=True)
    s = establish(d, mss=1000)
    d.send(seq=C + 1, ack=s, flags=ACK, window=2000)
    d.send(seq=C + 1, ack=s, flags=ACK, window=2000, payload=b"s" * 3000)
    assert [x for x in d.send(seq=C + 3001, ack=s + 2000, flags=ACK, window=10) if x.payload] == []
    out = d.tick(0.25)
    assert [len(x.payload) for x in out if x.payload][:1] == [10]


def test_paws_drops_old_timestamps_but_lets_reordered_new_data_in() -> None:
    d = StackDriver()
    sa = d.handshake(isn=C, timestamp=(5000, 0))
    s = sa.seq + 1
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"a" * 10, timestamp=(6000, 0))
    # an old duplicate with an older timestamp: dropped, answered with an ACK
    (ack,) = d.send(seq=C + 1, ack=s, flags=ACK, payload=b"X" * 10, timestamp=(5500, 0))
    assert ack.ack == C + 11 and d.counters["tcp.paws_drops"] == 1
    assert ack.timestamp is not None and ack.timestamp[1] == 6000
    # new data sent a little earlier but delivered late (reordering): accepted
    d.send(seq=C + 11, ack=s, flags=ACK, payload=b"b" * 10, timestamp=(5990, 0))
    assert bytes(d.rec.data) == b"a" * 10 + b"b" * 10 and d.counters["tcp.paws_drops"] == 1
    # a reordered pure ACK is not dropped either
    assert d.send(seq=C + 21, ack=s, flags=ACK, timestamp=(5980, 0)) == []
    assert d.counters["tcp.paws_drops"] == 1
    # far older timestamp on new data: still PAWS-dropped
    d.send(seq=C + 21, ack=s, flags=ACK, payload=b"c" * 10, timestamp=(1000, 0))
    assert d.counters["tcp.paws_drops"] == 2 and len(d.rec.data) == 20


def test_send_window_edge_comes_from_the_segment_that_updated_it() -> None:
    d = StackDriver(echo=True)
    s = establish(d, mss=100)
    out = d.send(seq=C + 1, ack=s, flags=ACK, window=300, payload=b"x" * 500)
    assert sum(len(x.payload) for x in out) == 300
    # a later segment (out of order) updates the window: still 300 bytes from s
    d.send(seq=C + 601, ack=s, flags=ACK, window=300, payload=b"z" * 100)
    # an earlier segment, reordered, acknowledges 300 bytes but must not move the edge
    out = d.send(seq=C + 501, ack=s + 300, flags=ACK, window=300, payload=b"y" * 100)
    assert [x for x in out if x.payload] == []
    out = d.send(seq=C + 701, ack=s + 300, flags=ACK, window=300)
    assert sum(len(x.payload) for x in out) == 300  # the peer's new window, from s + 300


def test_sack_recovery_retransmits_every_hole_and_only_holes() -> None:
    d = StackDriver(echo=True)
    s = establish(d, mss=100, sack_permitted=True)
    out = d.send(seq=C + 1, ack=s, flags=ACK, payload=b"h" * 800)
    assert len(out) == 8
    blocks = ((s + 400, s + 800), (s + 100, s + 300))
    out = d.send(seq=C + 801, ack=s, flags=ACK, sack_blocks=blocks)
    assert [(x.seq - s, len(x.payload)) for x in out if x.payload] == [(0, 100), (300, 100)]
    assert d.counters["tcp.fast_retransmits"] == 1
    # nothing else is missing: a further duplicate ACK retransmits nothing more
    out = d.send(seq=C + 801, ack=s, flags=ACK, sack_blocks=blocks)
    assert [x for x in out if x.payload] == []
    assert d.send(seq=C + 801, ack=s + 800, flags=ACK) == []
    assert d.tick(5.0) == []


def test_out_of_order_bound_refuses_counts_and_recovers() -> None:
    d = StackDriver(TcpConfig(ooo_max_segments=2))
    s = establish(d, sack_permitted=True)
    for k in (1, 3, 5):  # three holes' worth of out-of-order data, room for two
        d.send(seq=C + 1 + 100 * k, ack=s, flags=ACK, payload=bytes([k]) * 100)
    assert d.counters["tcp.ooo_refused_bytes"] == 100
    (ack,) = d.send(seq=C + 1, ack=s, flags=ACK, payload=bytes([0]) * 100)
    assert ack.ack == C + 201  # 0 and 1 delivered; 3 is held; 5 was refused
    for k in (2, 4, 5):  # the peer retransmits what is missing
        d.send(seq=C + 1 + 100 * k, ack=s, flags=ACK, payload=bytes([k]) * 100)
    assert bytes(d.rec.data) == b"".join(bytes([k]) * 100 for k in range(6))
