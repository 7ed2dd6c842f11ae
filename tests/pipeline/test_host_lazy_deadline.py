"""The loop's deadline is asked again only when ``HostStack.timers_dirty`` says it may have moved
earlier (``nf.loop``); TCP raises it only for a timer filed earlier than its last answer. A loop
that asks that seldom must emit exactly the frames, at exactly the times, of a loop that asks on
every wake: a timer armed by a frame that never fires late. Client flows with seeded timings
(SYN, data, echoed data acknowledged or not, RST or FIN) drive both; retransmissions, tail loss
probes, delayed ACKs and TIME-WAIT all fire from timers some frame armed."""

from __future__ import annotations

import collections
import random

import pytest

from pipeline.chain import PluginEnv, StreamChain
from pipeline.events import ListBus
from pipeline.host import HostStack
from pipeline.tcp.config import TcpConfig
from pipeline.tcp.stack import TcpStack
from pipeline.wire import ipv4
from pipeline.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpRepr
from plugins.apps.echo import EchoPlugin

OUR_MAC, PEER_MAC = bytes.fromhex("020000000a10"), bytes.fromhex("020000000b01")
VIP, CLIENT = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 1])


class LoopModel:
    """``nf.loop.Loop.run``'s deadline bookkeeping over a host stack: a frames-only wake asks
    ``poll_at`` before firing timers only when ``timers_dirty`` is set (``eager``: on every wake,
    as if every frame could move a deadline), and again after its output when timers fired or
    ``timers_dirty`` is set; a timer wake asks first. No wake ``MAX_SLEEP`` after the last ask:
    that would only hide a late deadline."""

    def __init__(self, eager: bool) -> None:
        self.eager = eager
        self.counters: collections.Counter[str] = collections.Counter()
        tcp = TcpStack(
            {(VIP, 7): StreamChain([EchoPlugin(None, PluginEnv())])},
            TcpConfig(time_wait=0.5),
            counters=self.counters,
            bus=ListBus(),
            rng=random.Random(1).randbytes,
        )
        self.host = HostStack(OUR_MAC, [VIP], counters=self.counters, tcp=tcp)
        self.out: list[tuple[float, bytes]] = []
        self.asks = 0
        self.deadline = self.host.poll_at()

    def _ask(self) -> None:
        self.asks += 1
        self.host.timers_dirty = False
        self.deadline = self.host.poll_at()

    def wake(self, frames: list[bytes], now: float, timer: bool = False) -> list[bytes]:
        host = self.host
        for frame in frames:
            host.receive_frame(frame, now)
        if self.eager or timer or host.timers_dirty:
            self._ask()
        fired = self.deadline is not None and self.deadline <= now
        if fired:
            host.handle_timer(now)
        out = host.frames_to_send(now)
        self.out += [(now, f) for f in out]
        if fired or host.timers_dirty:
            self._ask()
        return out

    def run_until(self, t: float) -> None:
        """The timer wakes due before ``t``."""
        for _ in range(10_000):
            if self.deadline is None or self.deadline >= t:
                return
            self.wake([], self.deadline, timer=True)
        raise AssertionError("timer wakes do not converge")


def frame(sport: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    mss = 1460 if flags & SYN else None
    tcp = TcpRepr(sport, 7, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, 64240, payload, mss=mss)
    segment = tcp.emit(CLIENT, VIP)
    header = ipv4.build_header(CLIENT, VIP, ipv4.PROTO_TCP, len(segment), 0)
    return OUR_MAC + PEER_MAC + b"\x08\x00" + header + segment


def schedule(seed: int, flows: int) -> list[tuple[float, int, str]]:
    """(time, flow, step) for each client's steps, in time order."""
    rnd = random.Random(seed)
    events = []
    t = 1.0
    for i in range(flows):
        t += rnd.choice((0.0, 0.0005, 0.003, 0.02, 0.3))
        data_at = t + rnd.choice((0.0005, 0.002, 0.03))
        events += [(t, i, "syn"), (data_at, i, "data")]
        if rnd.random() < 0.6:  # else the echoed data is never acknowledged: TLP, RTO
            events.append((data_at + rnd.choice((0.001, 0.01, 0.06)), i, "ack"))
        end = data_at + rnd.choice((0.002, 0.05, 0.5, 2.5))
        kind = rnd.choice(("rst", "fin", "fin_acked"))
        events.append((end, i, "rst" if kind == "rst" else "fin"))
        if kind == "fin_acked":
            events.append((end + 0.001, i, "last_ack"))
    return sorted(events, key=lambda e: (e[0], e[1]))


@pytest.mark.parametrize("seed", range(6))
def test_a_loop_asking_only_when_dirty_fires_every_timer_on_time(seed: int) -> None:
    lazy, eager = LoopModel(eager=False), LoopModel(eager=True)
    events = schedule(seed, flows=12)
    isn: dict[int, int] = {}
    size: dict[int, int] = {}
    for at, i, step in events:
        sport, c = 40000 + i, 1000 * (i + 1)
        n = size.setdefault(i, 100 + 700 * (i % 4))
        s = isn.get(i, 0) + 1
        if step == "syn":
            frames = [frame(sport, c, 0, SYN)]
        elif step == "data":
            frames = [frame(sport, c + 1, s, ACK), frame(sport, c + 1, s, ACK | PSH, b"x" * n)]
        elif step == "ack":
            frames = [frame(sport, c + 1 + n, s + n, ACK)]
        elif step == "rst":
            frames = [frame(sport, c + 1 + n, 0, RST)]
        elif step == "fin":
            frames = [frame(sport, c + 1 + n, s + n, ACK | FIN)]
        else:  # the server's FIN acknowledged
            frames = [frame(sport, c + 2 + n, s + n + 1, ACK)]
        for model in (lazy, eager):
            model.run_until(at)
        out = eager.wake(frames, at)
        lazy.wake(frames, at)
        if step == "syn":
            synack = TcpRepr.parse(memoryview(out[0])[34:])
            assert synack.flags == SYN | ACK
            isn[i] = synack.seq
    for model in (lazy, eager):
        model.run_until(1000.0)
    assert lazy.out == eager.out
    assert lazy.counters == eager.counters
    timed = ("tcp.retransmits", "tcp.tail_loss_probes", "tcp.flows_closed")
    assert all(eager.counters[k] for k in timed), eager.counters  # the timers did run
    assert lazy.asks < eager.asks  # and the lazy loop asked less often
