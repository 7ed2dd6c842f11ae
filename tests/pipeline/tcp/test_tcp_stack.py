"""Flow table: bounds, SYN backlog, SYN cookies under a flood, plugin errors, listeners, events."""

from __future__ import annotations

import pytest

from pipeline.chain import Downstream, FlowInfo, PluginEnv, StreamChain
from pipeline.events import SCHEMA
from pipeline.tcp import TcpConfig, TcpEndpoint
from pipeline.tcp.segment import Segment
from pipeline.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpRepr
from plugins.apps.echo import EchoPlugin
from tests.pipeline.tcp.tcp_harness import CPORT, PORT, StackDriver

C = 1000


def test_max_flows_refuses_new_syns_with_rst() -> None:
    d = StackDriver(TcpConfig(max_flows=2))
    for port in (1001, 1002):
        assert d.send(src_port=port, seq=C, flags=SYN)[0].flags == SYN | ACK
    (rst,) = d.send(src_port=1003, seq=C, flags=SYN)
    assert rst.flags == RST | ACK and rst.ack == C + 1
    assert d.counters["tcp.refused_max_flows"] == 1 and len(d.stack) == 2


def test_syn_backlog_full_drops_syns_when_cookies_are_off() -> None:
    d = StackDriver(TcpConfig(syn_backlog=2, syn_cookies=False))
    for port in (1001, 1002):
        d.send(src_port=port, seq=C, flags=SYN)
    assert d.send(src_port=1003, seq=C, flags=SYN) == []
    assert d.counters["tcp.syn_backlog_full"] == 1 and len(d.stack) == 2


def test_syn_flood_switches_to_cookies_and_legitimate_clients_still_connect() -> None:
    d = StackDriver(TcpConfig(syn_cookie_threshold=10, syn_backlog=10_000), echo=True)
    s = d.handshake(isn=C)  # an established flow from before the flood
    for i in range(200):
        d.now += 0.001
        (sa,) = d.send(src_port=2000 + i, seq=i * 7919, flags=SYN)
        assert sa.flags == SYN | ACK
    assert d.counters["tcp.syn_cookies_sent"] >= 180
    assert len(d.stack) <= 12  # no state for cookie SYN-ACKs
    # the flow from before the flood keeps working
    (echo,) = d.send(seq=C + 1, ack=s.seq + 1, flags=ACK | PSH, payload=b"old")
    assert echo.payload == b"old"
    # a legitimate client during the flood: cookie SYN-ACK, then its ACK creates the flow
    (sa,) = d.send(src_port=60000, seq=5000, flags=SYN, mss=1400, wscale=7, timestamp=(1, 0))
    assert sa.mss == 1460 and sa.wscale is None and sa.timestamp is None  # nothing remembered
    assert not any(f["client"].endswith(":60000") for f in d.stack.flows())
    (echo,) = d.send(src_port=60000, seq=5001, ack=sa.seq + 1, flags=ACK | PSH, payload=b"hi")
    assert echo.payload == b"hi" and echo.seq == sa.seq + 1 and echo.ack == 5003
    assert d.counters["tcp.syn_cookies_accepted"] == 1
    assert d.rec.opened[-1].client == ("192.0.2.1", 60000)
    # a forged ACK with a wrong cookie gets a RST and no flow
    (rst,) = d.send(src_port=60001, seq=9, ack=12345, flags=ACK)
    assert rst.flags == RST and d.counters["tcp.syn_cookies_invalid"] == 1


def test_a_fast_client_whose_handshakes_complete_is_not_a_flood() -> None:
    """2000 connections a second that each complete keep their own state (window scaling,
    timestamps), far past the threshold of 100 SYNs/s; the same rate of SYNs left unanswered
    (spoofed) gets cookies. A flood is SYNs that do not complete their handshake."""
    d = StackDriver(TcpConfig(syn_cookie_threshold=100, syn_backlog=10_000), echo=True)
    for i in range(2000):
        d.now += 0.0005
        (sa,) = d.send(src_port=2000 + i, seq=C, flags=SYN, wscale=7, timestamp=(1, 0))
        assert sa.wscale is not None and sa.timestamp is not None, i  # not a cookie
        d.send(src_port=2000 + i, seq=C + 1, ack=sa.seq + 1, flags=ACK, timestamp=(2, 1))
    assert d.counters["tcp.syn_cookies_sent"] == 0
    for i in range(300):
        d.now += 0.0005
        d.send(src_port=10000 + i, seq=C, flags=SYN)  # never answered
    assert d.counters["tcp.syn_cookies_sent"] >= 150


def test_cookie_mss_is_rounded_down_to_the_table() -> None:
    d = StackDriver(TcpConfig(syn_cookie_threshold=0), echo=True)
    (sa,) = d.send(seq=5000, flags=SYN, mss=1300)
    d.send(seq=5001, ack=sa.seq + 1, flags=ACK)
    out = d.send(seq=5001, ack=sa.seq + 1, flags=ACK, payload=b"m" * 3000)
    assert max(len(x.payload) for x in out) == 1220


def test_plugin_exception_aborts_only_that_flow() -> None:
    d = StackDriver(raise_on=b"boom")
    a = d.handshake(isn=C).seq + 1
    b = d.send(src_port=CPORT + 1, seq=C, flags=SYN)[0].seq + 1
    d.send(src_port=CPORT + 1, seq=C + 1, ack=b, flags=ACK)
    (rst,) = d.send(seq=C + 1, ack=a, flags=ACK, payload=b"boom")
    assert rst.flags == RST
    assert d.counters["tcp.plugin_errors"] == 1
    closed = d.bus.of("tcp.flow")[-1]
    assert closed["action"] == "closed" and closed["reason"] == "plugin_error"
    assert d.rec.closed == ["plugin_error"]
    assert len(d.stack) == 1  # the other flow is untouched
    d.send(src_port=CPORT + 1, seq=C + 1, ack=b, flags=ACK, payload=b"fine")
    assert d.rec.data.endswith(b"fine")


class ExplodingPlugin:
    def __init__(self, where: str) -> None:
        self.where = where

    def new_stage(self, next_stage: object) -> object:
        if self.where == "new":
            raise ValueError("cannot build")
        return self

    def on_open(self, *a: object) -> None:
        raise RuntimeError("open failed")


def test_plugin_exception_at_open_aborts_the_flow() -> None:
    for where in ("new", "open"):
        d = StackDriver()
        d.stack.set_listeners({(d.vip, PORT): StreamChain([ExplodingPlugin(where)])})  # type: ignore[list-item]
        (sa,) = d.send(seq=C, flags=SYN)
        (rst,) = d.send(seq=C + 1, ack=sa.seq + 1, flags=ACK)
        assert rst.flags == RST and d.counters["tcp.plugin_errors"] >= 1
        assert len(d.stack) == 0
        assert d.bus.of("tcp.flow")[-1]["reason"] == "plugin_error"


def test_listeners_can_be_replaced_at_runtime() -> None:
    d = StackDriver()
    d.stack.set_listeners({})
    (rst,) = d.send(seq=C, flags=SYN)
    assert rst.flags == RST | ACK
    d.stack.set_listeners({(d.vip, 9): StreamChain([EchoPlugin(None, PluginEnv())])})
    (sa,) = d.send(dst_port=9, seq=C, flags=SYN)
    d.send(dst_port=9, seq=C + 1, ack=sa.seq + 1, flags=ACK)
    (echo,) = d.send(dst_port=9, seq=C + 1, ack=sa.seq + 1, flags=ACK, payload=b"ok")
    assert echo.payload == b"ok"


def test_connection_ids_are_unique_and_flows_list_has_no_payload() -> None:
    d = StackDriver()
    for port in (1001, 1002, 1003):
        sa = d.send(src_port=port, seq=C, flags=SYN)[0]
        d.send(src_port=port, seq=C + 1, ack=sa.seq + 1, flags=ACK, payload=b"secret")
    flows = d.stack.flows()
    assert sorted(f["conn"] for f in flows) == [1, 2, 3]
    assert all(f["bytes_in"] == 6 for f in flows)
    assert "secret" not in repr(flows)


def test_isns_differ_per_four_tuple() -> None:
    d = StackDriver()
    isns = {d.send(src_port=p, seq=C, flags=SYN)[0].seq for p in range(3000, 3020)}
    assert len(isns) == 20


def test_poll_at_tracks_the_earliest_timer() -> None:
    d = StackDriver(TcpConfig(idle_timeout=100.0))
    assert d.stack.poll_at() is None
    d.send(seq=C, flags=SYN)
    assert d.stack.poll_at() == 1.0  # SYN-ACK retransmission
    d.send(TcpRepr(CPORT, PORT, C + 1, flags=RST))
    assert d.stack.poll_at() is None


def test_timers_moved_says_when_a_timer_was_filed_earlier_than_poll_at_said() -> None:
    d = StackDriver(TcpConfig(idle_timeout=100.0), echo=True)
    assert d.stack.poll_at() is None and d.stack.timers_moved is False
    (sa,) = d.send(seq=C, flags=SYN)  # SYN-ACK retransmission at 1.0: earlier than none
    assert d.stack.timers_moved is True
    assert d.stack.poll_at() == 1.0 and d.stack.timers_moved is False
    d.now = 0.005
    d.send(src_port=CPORT + 1, seq=C, flags=SYN)  # another at 1.005: the answer 1.0 holds
    assert d.stack.timers_moved is False
    d.now = 0.01  # data echoed: its retransmission and tail probe are due before 1.0
    d.send(seq=C + 1, ack=sa.seq + 1, flags=ACK | PSH, payload=b"hi")
    assert d.stack.timers_moved is True
    assert d.stack.poll_at() < 1.0 and d.stack.timers_moved is False
    d.send(TcpRepr(CPORT, PORT, C + 3, flags=RST))  # a removed flow only leaves it early
    assert d.stack.timers_moved is False
    assert d.stack.poll_at() == 1.005


def test_backpressure_closes_our_window_when_the_client_does_not_read() -> None:
    cfg = TcpConfig(send_buffer=4096, send_buffer_hard=65536, recv_buffer=8192)
    d = StackDriver(cfg, echo=True)
    s = d.handshake(isn=C, mss=1000).seq + 1
    seq = C + 1
    last = None
    for _ in range(20):  # the client sends but never opens its own window
        out = d.send(seq=seq, ack=s, flags=ACK, window=0, payload=b"p" * 1000)
        seq += 1000
        acks = [x for x in out if x.flags & ACK]
        if acks:
            last = acks[-1]
        if last is not None and last.window == 0:
            break
    assert last is not None and last.window == 0  # flow control reached the client
    (flow,) = d.stack._flows.values()
    assert flow.ep.send_queued >= 4096 and flow.ep.readable > 0  # the stage is not fed more
    assert len(d.rec.data) < seq - C - 1


def test_hard_send_buffer_bound_aborts_the_flow() -> None:
    cfg = TcpConfig(send_buffer=1024, send_buffer_hard=4096)
    d = StackDriver(cfg, reply=b"r" * 5000)
    s = d.handshake(isn=C).seq + 1
    out = d.send(seq=C + 1, ack=s, flags=ACK, window=0, payload=b"q")
    assert out[-1].flags == RST
    assert d.counters["tcp.send_buffer_overflows"] == 1
    assert d.rec.closed == ["send_buffer_overflow"] and len(d.stack) == 0


def test_a_bug_in_one_flow_drops_that_flow_not_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    d = StackDriver()
    a = d.handshake(isn=C).seq + 1
    b = d.send(src_port=CPORT + 1, seq=C, flags=SYN)[0].seq + 1
    d.send(src_port=CPORT + 1, seq=C + 1, ack=b, flags=ACK)
    flow = d.stack._flows[(d.client, CPORT, d.vip, PORT)]

    working = TcpEndpoint.receive_segment

    def broken(ep: TcpEndpoint, seg: Segment, now: float) -> None:
        if ep is flow.ep:  # the bug hits this flow only (endpoints have slots: patch the class)
            raise IndexError("bug")
        working(ep, seg, now)

    monkeypatch.setattr(TcpEndpoint, "receive_segment", broken)
    (rst,) = d.send(seq=C + 1, ack=a, flags=ACK, payload=b"x")
    assert rst.flags == RST and d.counters["tcp.internal_errors"] == 1
    assert d.bus.of("tcp.flow")[-1]["reason"] == "internal_error"
    d.send(src_port=CPORT + 1, seq=C + 1, ack=b, flags=ACK, payload=b"still fine")
    assert d.rec.data.endswith(b"still fine") and len(d.stack) == 1


class TimerStage:
    """Sends b"tick" one second after it opens (a stage-driven timer)."""

    def __init__(self) -> None:
        self.due: float | None = None
        self.down: Downstream | None = None
        self.fired = 0

    def new_stage(self, next_stage: object) -> TimerStage:
        return self

    def on_open(self, flow: FlowInfo, down: Downstream, now: float) -> None:
        self.down, self.due = down, now + 1.0

    def receive_data(self, data: bytes, now: float) -> None: ...

    def receive_eof(self, now: float) -> None: ...

    def on_close(self, reason: str, now: float) -> None: ...

    def poll_at(self) -> float | None:
        return self.due

    def handle_timer(self, now: float) -> None:
        if self.due is not None and now >= self.due and self.down is not None:
            self.due = None
            self.fired += 1
            self.down.send(b"tick")


def test_stage_timers_are_honoured() -> None:
    d = StackDriver(TcpConfig(idle_timeout=100.0))
    stage = TimerStage()
    d.stack.set_listeners({(d.vip, PORT): StreamChain([stage])})
    s = d.handshake(isn=C).seq + 1
    assert d.stack.poll_at() == 1.0
    assert d.tick(0.9) == []
    (seg,) = d.tick(0.11)
    assert seg.payload == b"tick" and seg.seq == s and stage.fired == 1


def test_full_table_recycles_the_oldest_time_wait_flow_first() -> None:
    d = StackDriver(TcpConfig(max_flows=2, time_wait=60.0), close_on=b"x")
    for port in (1001, 1002):
        sa = d.send(src_port=port, seq=C, flags=SYN)[0]
        d.send(src_port=port, seq=C + 1, ack=sa.seq + 1, flags=ACK, payload=b"x")
        d.send(src_port=port, seq=C + 2, ack=sa.seq + 2, flags=ACK | 0x01)
    assert [f["state"] for f in d.stack.flows()] == ["TIME-WAIT", "TIME-WAIT"]
    (sa,) = d.send(src_port=1003, seq=C, flags=SYN)
    assert sa.flags == SYN | ACK and d.counters["tcp.time_wait_recycled"] == 1
    assert sorted(f["client"] for f in d.stack.flows()) == ["192.0.2.1:1002", "192.0.2.1:1003"]
    (sa,) = d.send(src_port=1004, seq=C, flags=SYN)
    assert sa.flags == SYN | ACK and d.counters["tcp.time_wait_recycled"] == 2
    (rst,) = d.send(src_port=1005, seq=C, flags=SYN)  # nothing left to recycle
    assert rst.flags == RST | ACK and d.counters["tcp.refused_max_flows"] == 1


class AbortingStage(TimerStage):
    """Aborts its flow from inside receive_data."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def receive_data(self, data: bytes, now: float) -> None:
        self.calls.append("data")
        assert self.down is not None
        self.down.abort("policy")

    def receive_eof(self, now: float) -> None:
        self.calls.append("eof")

    def on_close(self, reason: str, now: float) -> None:
        self.calls.append(f"close:{reason}")


def test_stage_abort_from_receive_data_sends_rst_and_nothing_more_reaches_it() -> None:
    d = StackDriver()
    stage = AbortingStage()
    d.stack.set_listeners({(d.vip, PORT): StreamChain([stage])})
    s = d.handshake(isn=C).seq + 1
    (rst,) = d.send(seq=C + 1, ack=s, flags=ACK | FIN, payload=b"bad")
    assert rst.flags == RST
    assert stage.calls == ["data", "close:policy"]
    assert d.bus.of("tcp.flow")[-1]["reason"] == "policy" and len(d.stack) == 0


def test_flow_events_carry_the_schemas_fields_and_the_endpoints_counts() -> None:
    d = StackDriver(echo=True)
    s = d.handshake(isn=C).seq + 1
    d.send(seq=C + 1, ack=s, flags=ACK | PSH, payload=b"hello")
    d.send(seq=C + 6, ack=s + 5, flags=ACK | FIN)  # the echo stage closes too
    d.send(seq=C + 7, ack=s + 6, flags=ACK)
    opened, closed = d.bus.of("tcp.flow")
    assert list(opened) == list(closed) == list(SCHEMA["tcp.flow"])
    assert closed["bytes_in"] == closed["bytes_out"] == 5 and closed["segments_in"] == 4
    assert (closed["action"], closed["reason"]) == ("closed", "fin")


class _NobodyListens:
    """A bus with no subscriber: ``wants`` says no, so nothing may be built or emitted."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.emitted: list[str] = []

    def wants(self, topic: str) -> bool:
        self.asked.append(topic)
        return False

    def emit(self, topic: str, fields: object) -> None:
        self.emitted.append(topic)


def test_flow_events_nobody_wants_are_not_built() -> None:
    d = StackDriver(TcpConfig(), echo=True)
    bus = _NobodyListens()
    d.stack.bus = bus
    s = d.handshake(isn=C)
    (echo,) = d.send(seq=C + 1, ack=s.seq + 1, flags=ACK | PSH, payload=b"x")
    d.send(seq=C + 2, ack=echo.seq + 1, flags=RST)
    assert d.counters["tcp.flows_opened"] == 1 and d.counters["tcp.flows_closed"] == 1
    assert bus.asked == ["tcp.flow", "tcp.flow"] and bus.emitted == []
