"""Sequence numbers wrapping past 2^32, on both the receive and the send side."""

from __future__ import annotations

import random

from pipeline.tcp import State, TcpConfig, TcpEndpoint
from pipeline.tcp.seq import seq_diff, seq_ge, seq_gt, seq_le, seq_lt, unwrap
from pipeline.wire.tcp import ACK, SYN, TcpRepr
from tests.pipeline.tcp.tcp_harness import StackDriver

A, B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def test_seq_helpers_wrap() -> None:
    assert seq_lt(0xFFFFFFF0, 0x10) and seq_gt(0x10, 0xFFFFFFF0)
    assert seq_le(5, 5) and seq_ge(5, 5)
    assert seq_diff(0x10, 0xFFFFFFF0) == 0x20
    assert unwrap(0x10, 0xFFFFFFF0) == 0x1_0000_0010
    assert unwrap(0xFFFFFFF0, 0x1_0000_0010) == 0xFFFFFFF0


def test_receive_side_across_the_wrap_in_and_out_of_order() -> None:
    d = StackDriver()
    isn = 0xFFFFFF00
    sa = d.handshake(isn=isn, sack_permitted=True)
    s = sa.seq + 1
    chunks = [(isn + 1 + i * 100, bytes([i]) * 100) for i in range(6)]  # crosses 2^32 at 255 bytes
    wire = [((o & 0xFFFFFFFF), data) for o, data in chunks]
    (ack,) = d.send(seq=wire[3][0], ack=s, flags=ACK, payload=wire[3][1])
    assert ack.ack == (isn + 1) & 0xFFFFFFFF and ack.sack_blocks == ((wire[3][0], wire[4][0]),)
    for off, data in (wire[0], wire[2], wire[1], wire[5], wire[4]):
        d.send(seq=off, ack=s, flags=ACK, payload=data)
    assert bytes(d.rec.data) == b"".join(c for _, c in chunks)
    d.tick(0.1)
    (flow,) = d.stack.flows()
    assert flow["bytes_in"] == 600


def _pump(a: TcpEndpoint, b: TcpEndpoint, now: float) -> bool:
    moved = False
    for src, dst, x, y in ((A, B, a, b), (B, A, b, a)):
        for seg in x.segments_to_send(now):
            y.receive_segment(TcpRepr.parse(seg.emit(src, dst)), now)
            moved = True
    return moved


def test_both_directions_across_the_wrap_endpoint_to_endpoint() -> None:
    cfg = TcpConfig(recv_buffer=65536)
    client = TcpEndpoint.connect(cfg, 40000, 7, iss=0xFFFF0000, mss=1460, now=0.0)
    (syn,) = client.segments_to_send(0.0)
    assert syn.flags == SYN and syn.wscale is not None and syn.sack_permitted
    server = TcpEndpoint.accept(
        cfg, TcpRepr.parse(syn.emit(A, B)), iss=0xFFFFF000, mss=1460, now=0.0
    )
    now = 0.0
    for _ in range(10):
        if not _pump(client, server, now):
            break
    assert client.state is server.state is State.ESTABLISHED
    up = random.Random(1).randbytes(300_000)
    down = random.Random(2).randbytes(200_000)
    client.send(up)
    server.send(down)
    got_up, got_down = bytearray(), bytearray()
    for _ in range(10_000):
        now += 0.001
        moved = _pump(client, server, now)
        got_up += server.read()
        got_down += client.read()
        if len(got_up) == len(up) and len(got_down) == len(down):
            break
        if not moved:
            client.handle_timer(now)
            server.handle_timer(now)
    assert bytes(got_up) == up and bytes(got_down) == down
    assert client.snd_una > 2**32 and server.snd_una > 2**32  # both really wrapped
    client.close()
    server.close()
    for _ in range(10):
        _pump(client, server, now)
    assert {client.state, server.state} <= {State.TIME_WAIT, State.CLOSED}
