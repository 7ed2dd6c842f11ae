"""Passive open, option negotiation, RST for closed ports, SYN-RECEIVED rules (packet level)."""

from __future__ import annotations

from pipeline.tcp import TcpConfig
from pipeline.wire.tcp import ACK, RST, SYN, TcpRepr
from tests.pipeline.tcp.tcp_harness import CPORT, PORT, StackDriver


def test_handshake_negotiates_options_and_opens_the_stage() -> None:
    d = StackDriver()
    out = d.send(seq=1000, flags=SYN, mss=1400, wscale=7, sack_permitted=True, timestamp=(5, 0))
    assert len(out) == 1
    sa = out[0]
    assert sa.flags == SYN | ACK and sa.ack == 1001
    assert (sa.src_port, sa.dst_port) == (PORT, CPORT)
    assert sa.mss == 1460 and sa.wscale == 3 and sa.sack_permitted
    assert sa.timestamp is not None and sa.timestamp[1] == 5
    assert sa.window == 65535
    assert d.rec.opened == [] and d.bus.of("tcp.flow") == []  # not before the handshake ends
    assert d.stack.flows()[0]["state"] == "SYN-RECEIVED"
    out = d.send(seq=1001, ack=sa.seq + 1, flags=ACK, timestamp=(6, sa.timestamp[0]))
    assert out == []
    assert d.rec.opened[0].client == ("192.0.2.1", CPORT)
    assert d.rec.opened[0].vip == ("192.0.2.10", PORT)
    (ev,) = d.bus.of("tcp.flow")
    assert ev["action"] == "opened" and ev["client"] == f"192.0.2.1:{CPORT}"
    (flow,) = d.stack.flows()
    assert flow["state"] == "ESTABLISHED" and set(flow) == {
        "conn",
        "client",
        "vip",
        "state",
        "bytes_in",
        "bytes_out",
        "age",
    }


def test_synack_without_peer_options_offers_only_mss() -> None:
    d = StackDriver(TcpConfig(recv_buffer=32768))
    (sa,) = d.send(seq=7, flags=SYN)
    assert sa.mss == 1460 and sa.wscale is None and not sa.sack_permitted and sa.timestamp is None
    assert sa.window == 32768


def test_ipv6_handshake_advertises_the_v6_mss() -> None:
    d = StackDriver(v6=True)
    sa = d.handshake(mss=1440)
    assert sa.mss == 1440  # 1500 - 40 (IPv6) - 20 (TCP)
    assert d.rec.opened[0].client[0] == "2001:db8::1"
    assert d.bus.of("tcp.flow")[0]["client"] == f"[2001:db8::1]:{CPORT}"


def test_rst_for_closed_port() -> None:
    d = StackDriver()
    assert d.send(dst_port=8, seq=5, flags=SYN, payload=b"ab") == [
        TcpRepr(8, CPORT, 0, 8, RST | ACK, 0)
    ]
    assert d.send(dst_port=8, seq=5, ack=777, flags=ACK) == [TcpRepr(8, CPORT, 777, 0, RST, 0)]
    assert d.send(dst_port=8, seq=5, flags=RST) == []  # never answer a RST
    assert d.counters["tcp.rst_closed_port"] == 2


def test_ack_without_a_flow_gets_rst() -> None:
    d = StackDriver()
    assert d.send(seq=5, ack=99, flags=ACK) == [TcpRepr(PORT, CPORT, 99, 0, RST, 0)]


def test_duplicate_syn_gets_the_same_synack() -> None:
    d = StackDriver()
    (sa,) = d.send(seq=1000, flags=SYN)
    assert d.send(seq=1000, flags=SYN) == [sa]


def test_synack_retransmitted_with_backoff_then_given_up() -> None:
    d = StackDriver(TcpConfig(max_syn_retries=2, rto_initial=1.0))
    (sa,) = d.send(seq=1000, flags=SYN)
    assert d.tick(0.99) == []
    assert d.tick(0.02) == [sa]
    assert d.tick(1.98) == []
    assert d.tick(0.04) == [sa]
    rst = d.tick(4.0)
    assert rst == [TcpRepr(PORT, CPORT, sa.seq + 1, 0, RST, 0)]
    assert len(d.stack) == 0 and d.counters["tcp.give_ups"] == 1
    assert d.bus.of("tcp.flow") == [] and d.rec.closed == []  # never opened


def test_bad_ack_in_syn_received_gets_rst_and_keeps_waiting() -> None:
    d = StackDriver()
    (sa,) = d.send(seq=1000, flags=SYN)
    assert d.send(seq=1001, ack=sa.seq + 5, flags=ACK) == [
        TcpRepr(PORT, CPORT, sa.seq + 5, 0, RST, 0)
    ]
    assert d.send(seq=1001, ack=sa.seq + 1, flags=ACK) == []
    assert len(d.rec.opened) == 1


def test_rst_in_syn_received_drops_the_embryo() -> None:
    d = StackDriver()
    d.send(seq=1000, flags=SYN)
    assert d.send(seq=1001, flags=RST) == []
    assert len(d.stack) == 0 and d.rec.opened == []


def test_bad_checksum_and_garbage_are_counted_drops() -> None:
    d = StackDriver()
    raw = bytearray(d.tpl(seq=1, flags=SYN).emit(d.client, d.vip))
    raw[4] ^= 0xFF
    assert d.send_raw(bytes(raw)) == []
    assert d.counters["drop.bad_checksum"] == 1
    assert d.send_raw(b"\x00" * 10) == []
    assert d.counters["drop.tcp_truncated"] == 1
    assert len(d.stack) == 0
