"""forward on the real TCP stack (packet level): bytes written from backend callbacks go out at the
next timer, a slow backend closes the client's window, resuming refills it, backend failure RSTs
the client with its reason in the ``tcp.flow`` event."""

from __future__ import annotations

from pipeline.chain import PluginEnv, StreamChain
from pipeline.tcp import TcpConfig
from pipeline.wire.tcp import ACK, FIN, PSH, RST, TcpRepr
from plugins.apps.forward import ForwardPlugin
from tests.pipeline.tcp.tcp_harness import PORT, StackDriver
from tests.plugins.apps.forward_fakes import FakeConn, FakeConnector

C = 1000


def forward_driver(
    config: TcpConfig | None = None, buffer: int = 65536
) -> tuple[StackDriver, FakeConnector]:
    d = StackDriver(config)
    connector = FakeConnector()
    env = PluginEnv(vs={"backend": "127.0.0.1:8080", "buffer": buffer})
    env.shared["connector"] = connector
    d.stack.set_listeners({(d.vip, PORT): StreamChain([ForwardPlugin(None, env)])})
    return d, connector


def connected(d: StackDriver, connector: FakeConnector, **syn: int) -> tuple[int, FakeConn]:
    """Handshake; returns our next sequence number and the backend connection."""
    s = d.handshake(isn=C, **syn).seq + 1
    (conn,) = connector.conns
    conn.handler.on_connected(d.now)
    return s, conn


def test_backend_bytes_reach_the_client_at_the_next_timer() -> None:
    d, connector = forward_driver()
    s, conn = connected(d, connector)
    d.send(seq=C + 1, ack=s, flags=ACK | PSH, payload=b"GET /")
    assert conn.take() == b"GET /"
    conn.handler.on_data(b"response", d.now)  # from the loop, outside any stack call
    assert d.stack.poll_at() == d.now  # due at once
    (seg,) = d.tick(0)
    assert seg.payload == b"response" and seg.seq == s


def test_slow_backend_closes_the_client_window_and_draining_reopens_it() -> None:
    cfg = TcpConfig(recv_buffer=16384)
    d, connector = forward_driver(cfg, buffer=4096)
    s, conn = connected(d, connector, mss=1000)
    seq = C + 1
    last = None
    for _ in range(40):  # the backend takes nothing; the client keeps sending
        out = d.send(seq=seq, ack=s, flags=ACK | PSH, payload=b"u" * 1000)
        seq += 1000
        out += d.tick(0.05)  # delayed ACKs
        acks = [x for x in out if x.flags & ACK]
        if acks:
            last = acks[-1]
        if last is not None and last.window == 0:
            break
    assert last is not None and last.window == 0  # the client is told to stop
    (flow,) = d.stack._flows.values()
    assert flow.paused and conn.buffered >= 4096
    fed = conn.buffered
    assert fed < seq - C - 1  # the rest waits in the TCP receive buffer
    conn.take()  # the backend catches up: reading resumes
    out = d.tick(0)
    assert conn.buffered > 0  # the stage was fed the waiting bytes (and paused again)
    assert any(x.window > 0 for x in out)  # window update toward the client
    acked = max(x.ack for x in out)
    for _ in range(20):
        conn.take()
        acked = max([acked, *(x.ack for x in d.tick(0.05))])
    # every byte TCP accepted reached the backend, in order (the rest was out of window)
    assert len(conn.received) == acked - C - 1 > fed
    assert bytes(conn.received) == b"u" * len(conn.received)


def test_client_fin_then_backend_eof_closes_cleanly() -> None:
    d, connector = forward_driver()
    s, conn = connected(d, connector)
    d.send(seq=C + 1, ack=s, flags=ACK | PSH | FIN, payload=b"req")
    assert conn.take() == b"req" and conn.closed
    conn.handler.on_data(b"resp", d.now)
    conn.handler.on_eof(d.now)
    out = d.tick(0)
    assert b"".join(x.payload for x in out) == b"resp" and out[-1].flags & FIN
    d.send(seq=C + 5, ack=s + 5, flags=ACK)
    closed = d.bus.of("tcp.flow")[-1]
    assert closed["action"] == "closed" and closed["reason"] == "fin"
    assert not conn.aborted


def test_backend_refused_resets_the_client_with_the_reason() -> None:
    d, connector = forward_driver()
    d.handshake(isn=C)
    (conn,) = connector.conns
    conn.handler.on_error("backend_refused", d.now)
    (rst,) = d.tick(0)
    assert rst.flags & RST
    closed = d.bus.of("tcp.flow")[-1]
    assert closed["action"] == "closed" and closed["reason"] == "backend_refused"
    assert len(d.stack) == 0 and d.counters["tcp.internal_errors"] == 0


def test_client_reset_aborts_the_backend() -> None:
    d, connector = forward_driver()
    s, conn = connected(d, connector)
    d.send(TcpRepr(d.tpl().src_port, PORT, C + 1, flags=RST))
    assert conn.aborted and not conn.closed
    conn.handler.on_data(b"late", d.now)  # a late callback after the flow is gone
    assert d.tick(0) == []
