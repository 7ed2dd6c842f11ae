"""FIN in every order, half-close, TIME-WAIT, RST acceptance (RFC 5961), idle timeout."""

from __future__ import annotations

import weakref

from pipeline.tcp import TcpConfig
from pipeline.wire.tcp import ACK, FIN, PSH, RST, SYN
from tests.pipeline.tcp.tcp_harness import StackDriver

C = 1000


def establish(d: StackDriver) -> int:
    return d.handshake(isn=C).seq + 1


def state(d: StackDriver) -> str:
    (flow,) = d.stack.flows()
    return str(flow["state"])


def test_client_half_close_then_server_finishes_sending() -> None:
    d = StackDriver(echo=True)
    s = establish(d)
    out = d.send(seq=C + 1, ack=s, flags=ACK | PSH, payload=b"hello")
    assert [x.payload for x in out] == [b"hello"]
    # client shuts down writing; the echo stage answers by closing after its pending bytes
    (fin,) = d.send(seq=C + 6, ack=s + 5, flags=ACK | FIN)
    assert fin.flags == ACK | FIN and fin.seq == s + 5 and fin.ack == C + 7
    assert d.rec.eof == 1 and state(d) == "LAST-ACK"
    assert d.send(seq=C + 7, ack=s + 6, flags=ACK) == []
    assert len(d.stack) == 0 and d.rec.closed == ["fin"]
    closed = d.bus.of("tcp.flow")[-1]
    assert closed["reason"] == "fin" and closed["bytes_in"] == 5 and closed["bytes_out"] == 5


def test_half_closed_client_still_receives_the_rest_of_its_echo() -> None:
    d = StackDriver(echo=True)
    s = d.handshake(isn=C, mss=1000).seq + 1
    d.send(seq=C + 1, ack=s, flags=ACK, window=1000)
    out = d.send(seq=C + 1, ack=s, flags=ACK | FIN, window=1000, payload=b"e" * 3000)
    # the client's FIN is acknowledged; only a window's worth of echo can go out yet
    assert out[-1].ack == C + 3002 and sum(len(x.payload) for x in out) == 1000
    assert d.rec.eof == 1 and state(d) == "LAST-ACK"  # echo closed after its pending bytes
    got = 1000
    for _ in range(5):
        out = d.send(seq=C + 3002, ack=s + got, flags=ACK, window=1000)
        got += sum(len(x.payload) for x in out)
        if any(x.flags & FIN for x in out):
            break
    assert got == 3000 and out[-1].flags & FIN and out[-1].seq + len(out[-1].payload) == s + 3000
    assert d.send(seq=C + 3002, ack=s + 3001, flags=ACK) == []
    assert len(d.stack) == 0 and d.rec.closed == ["fin"]


def test_server_closes_first_client_keeps_sending_then_time_wait() -> None:
    d = StackDriver(close_on=b"bye")
    s = establish(d)
    (fin,) = d.send(seq=C + 1, ack=s, flags=ACK, payload=b"bye")
    assert fin.flags & FIN and fin.seq == s and fin.ack == C + 4
    assert state(d) == "FIN-WAIT-1"
    assert d.send(seq=C + 4, ack=s + 1, flags=ACK) == []
    assert state(d) == "FIN-WAIT-2"
    d.send(seq=C + 4, ack=s + 1, flags=ACK, payload=b"more data")  # half-closed: still accepted
    assert bytes(d.rec.data) == b"byemore data"
    (ack,) = d.send(seq=C + 13, ack=s + 1, flags=ACK | FIN)
    assert ack.ack == C + 14 and state(d) == "TIME-WAIT"
    assert d.rec.closed == ["fin"] and d.rec.eof == 1
    # a retransmitted FIN is acknowledged again and restarts the timer
    d.tick(1.5)
    (again,) = d.send(seq=C + 13, ack=s + 1, flags=ACK | FIN)
    assert again.ack == C + 14
    d.tick(1.9)
    assert state(d) == "TIME-WAIT"
    d.tick(0.2)
    assert len(d.stack) == 0 and d.rec.closed == ["fin"]


def test_simultaneous_close_goes_through_closing() -> None:
    d = StackDriver(close_on=b"x")
    s = establish(d)
    (fin,) = d.send(seq=C + 1, ack=s, flags=ACK, payload=b"x")
    assert fin.flags & FIN
    (ack,) = d.send(seq=C + 2, ack=s, flags=ACK | FIN)  # our FIN not acknowledged yet
    assert ack.ack == C + 3 and state(d) == "CLOSING"
    assert d.send(seq=C + 3, ack=s + 1, flags=ACK) == []
    assert state(d) == "TIME-WAIT"
    d.tick(2.1)
    assert len(d.stack) == 0


def test_fin_and_ack_of_our_fin_together_goes_to_time_wait() -> None:
    d = StackDriver(close_on=b"x")
    s = establish(d)
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"x")
    (ack,) = d.send(seq=C + 2, ack=s + 1, flags=ACK | FIN)
    assert ack.ack == C + 3 and state(d) == "TIME-WAIT"


def test_out_of_order_fin_waits_for_the_data_before_it() -> None:
    d = StackDriver()
    s = establish(d)
    d.send(seq=C + 6, ack=s, flags=ACK | FIN, payload=b"world")
    assert d.rec.eof == 0 and state(d) == "ESTABLISHED"
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"hello")
    assert bytes(d.rec.data) == b"helloworld" and d.rec.eof == 1 and state(d) == "CLOSE-WAIT"


def test_new_syn_reuses_a_time_wait_four_tuple() -> None:
    d = StackDriver(close_on=b"x")
    s = establish(d)
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"x")
    d.send(seq=C + 2, ack=s + 1, flags=ACK | FIN)
    assert state(d) == "TIME-WAIT"
    (sa,) = d.send(seq=C + 100_000, flags=SYN)
    assert sa.flags == SYN | ACK and sa.ack == C + 100_001 and state(d) == "SYN-RECEIVED"


def test_rst_with_exact_sequence_closes() -> None:
    d = StackDriver()
    s = establish(d)
    assert d.send(seq=C + 1, ack=s, flags=RST) == []
    assert len(d.stack) == 0 and d.rec.closed == ["rst_received"]
    assert d.bus.of("tcp.flow")[-1]["reason"] == "rst_received"


def test_rst_in_window_but_not_exact_gets_challenge_ack() -> None:
    d = StackDriver()
    s = establish(d)
    (ack,) = d.send(seq=C + 100, flags=RST)
    assert ack.flags == ACK and ack.seq == s and ack.ack == C + 1
    assert state(d) == "ESTABLISHED" and d.counters["tcp.challenge_acks"] == 1


def test_rst_outside_window_is_ignored() -> None:
    d = StackDriver(TcpConfig(recv_buffer=4096))
    establish(d)
    assert d.send(seq=C + 1_000_000, flags=RST) == []
    assert state(d) == "ESTABLISHED"


def test_syn_in_established_gets_challenge_ack() -> None:
    d = StackDriver()
    s = establish(d)
    (ack,) = d.send(seq=C + 1, flags=SYN)
    assert ack.flags == ACK and ack.seq == s and ack.ack == C + 1
    assert state(d) == "ESTABLISHED"


def test_ack_for_unsent_data_is_answered_and_dropped() -> None:
    d = StackDriver()
    s = establish(d)
    (ack,) = d.send(seq=C + 1, ack=s + 1000, flags=ACK, payload=b"nope")
    assert ack.ack == C + 1 and d.rec.data == b""


def test_idle_timeout_aborts_with_rst() -> None:
    d = StackDriver(TcpConfig(idle_timeout=5.0))
    s = establish(d)
    assert d.tick(4.9) == []
    (rst,) = d.tick(0.2)
    assert rst.flags == RST and rst.seq == s
    assert d.rec.closed == ["idle"] and len(d.stack) == 0


def test_keepalive_probes_then_gives_up() -> None:
    d = StackDriver(TcpConfig(keepalive=10.0, keepalive_probes=2, idle_timeout=1000))
    s = establish(d)
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"x")
    d.tick(0.1)
    (probe,) = d.tick(10.0)
    assert probe.seq == s - 1 and probe.payload == b""
    (probe2,) = d.tick(2.5)
    assert probe2.seq == s - 1
    (rst,) = d.tick(2.5)
    assert rst.flags == RST and d.rec.closed == ["timeout"]


def test_challenge_acks_are_rate_limited() -> None:
    d = StackDriver()
    establish(d)
    answered = sum(len(d.send(seq=C + 100 + i, flags=RST)) for i in range(50))
    assert answered == 10 and d.counters["tcp.challenge_acks_suppressed"] == 40
    d.tick(1.0)
    assert len(d.send(seq=C + 100, flags=RST)) == 1  # a new second, a new allowance
    assert state(d) == "ESTABLISHED"


def test_a_closed_flow_lets_its_stage_go_while_in_time_wait() -> None:
    d = StackDriver(close_on=b"bye")
    s = establish(d)
    (flow,) = d.stack._flows.values()
    assert flow.stage is not None
    stage = weakref.ref(flow.stage)
    (fin,) = d.send(seq=C + 1, ack=s, flags=ACK | PSH, payload=b"bye")
    assert fin.flags & FIN
    d.send(seq=C + 4, ack=s + 1, flags=ACK | FIN)
    assert state(d) == "TIME-WAIT" and d.rec.closed == ["fin"]
    assert stage() is None  # freed at once: no cycle left for a later full collection
    assert d.rec.down is not None
    d.rec.down.send(b"late")  # a stage's late write is ignored, as before
    assert d.tick(0.5) == [] and state(d) == "TIME-WAIT"
