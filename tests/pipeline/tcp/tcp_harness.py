"""Test harnesses for the TCP stack: a packet-level driver (smoltcp style) and an in-process pair.

``StackDriver`` plays the client by hand: ``send(**fields)`` feeds one segment to the stack and
returns the segments it answered with; ``tick(dt)`` advances the fake clock and fires timers.
``Pair`` connects a real ``TcpEndpoint`` client to the stack through two ``FaultInjector`` links
and runs both on a simulated clock until a condition holds (bounded in steps and time).
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.chain import Downstream, FlowInfo, StreamChain, StreamStage
from pipeline.events import ListBus
from pipeline.io.fault import FaultConfig, FaultInjector
from pipeline.tcp import TcpConfig, TcpEndpoint, TcpStack
from pipeline.wire.checksum import pseudo_header_sum, verify
from pipeline.wire.tcp import ACK, PROTO_TCP, TcpRepr

CLIENT = bytes([192, 0, 2, 1])
VIP = bytes([192, 0, 2, 10])
CLIENT6 = bytes.fromhex("20010db8000000000000000000000001")
VIP6 = bytes.fromhex("20010db8000000000000000000000010")
CPORT = 49500
PORT = 7


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@dataclass
class Recorder:
    """What a recording stage saw."""

    opened: list[FlowInfo] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    eof: int = 0
    closed: list[str] = field(default_factory=list)
    down: Downstream | None = None


class RecordingStage:
    """Keeps everything it is given; optionally echoes or raises on demand."""

    def __init__(
        self,
        rec: Recorder,
        echo: bool = False,
        raise_on: bytes | None = None,
        close_on: bytes | None = None,
        reply: bytes = b"",
    ) -> None:
        self.rec, self.echo, self.raise_on, self.close_on = rec, echo, raise_on, close_on
        self.reply = reply

    def on_open(self, flow: FlowInfo, down: Downstream, now: float) -> None:
        self.rec.opened.append(flow)
        self.rec.down = down

    def receive_data(self, data: bytes, now: float) -> None:
        if self.raise_on is not None and self.raise_on in data:
            raise RuntimeError("plugin bug")
        self.rec.data += data
        if self.rec.down is None:
            return
        if self.echo:
            self.rec.down.send(data)
        if self.reply:
            self.rec.down.send(self.reply)
        if self.close_on is not None and self.close_on in data:
            self.rec.down.close()

    def receive_eof(self, now: float) -> None:
        self.rec.eof += 1
        if self.echo and self.rec.down is not None:
            self.rec.down.close()

    def on_close(self, reason: str, now: float) -> None:
        self.rec.closed.append(reason)

    def poll_at(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None


class RecordingPlugin:
    def __init__(self, rec: Recorder, **kw: Any) -> None:
        self.rec, self.kw = rec, kw

    def new_stage(self, next_stage: StreamStage | None) -> StreamStage:
        return RecordingStage(self.rec, **self.kw)


def recording_chain(rec: Recorder, **kw: Any) -> StreamChain:
    return StreamChain([RecordingPlugin(rec, **kw)])


def parse_out(src: bytes, dst: bytes, raw: bytes) -> TcpRepr:
    assert verify(raw, pseudo_header_sum(src, dst, PROTO_TCP, len(raw))), "bad checksum emitted"
    seg = TcpRepr.parse(raw)
    return replace(seg, payload=bytes(seg.payload))


class StackDriver:
    """The stack under test plus a hand-driven client (``send``/``tick`` return the replies)."""

    def __init__(
        self,
        config: TcpConfig | None = None,
        *,
        v6: bool = False,
        seed: int = 1,
        **stage: Any,
    ) -> None:
        self.config = config or TcpConfig()
        self.rec = Recorder()
        self.counters: collections.Counter[str] = collections.Counter()
        self.bus = ListBus()
        self.client, self.vip = (CLIENT6, VIP6) if v6 else (CLIENT, VIP)
        self.stack = TcpStack(
            {(self.vip, PORT): recording_chain(self.rec, **stage)},
            self.config,
            counters=self.counters,
            bus=self.bus,
            rng=seeded(seed),
        )
        self.now = 0.0

    def tpl(self, **fields: Any) -> TcpRepr:
        base: dict[str, Any] = {"src_port": CPORT, "dst_port": PORT, "seq": 0, "window": 65535}
        base.update(fields)
        return TcpRepr(**base)

    def send(self, seg: TcpRepr | None = None, **fields: Any) -> list[TcpRepr]:
        seg = seg if seg is not None else self.tpl(**fields)
        raw = seg.emit(self.client, self.vip)
        self.stack.receive_tcp(self.client, self.vip, memoryview(raw), self.now)
        return self.output()

    def send_raw(self, raw: bytes) -> list[TcpRepr]:
        self.stack.receive_tcp(self.client, self.vip, memoryview(raw), self.now)
        return self.output()

    def output(self) -> list[TcpRepr]:
        out = []
        for src, dst, raw in self.stack.take_output():
            assert (src, dst) == (self.vip, self.client)
            out.append(parse_out(src, dst, raw))
        return out

    def tick(self, dt: float) -> list[TcpRepr]:
        """Advance the clock by ``dt``, firing every timer due on the way."""
        end = self.now + dt
        for _ in range(10_000):
            t = self.stack.poll_at()
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            self.stack.handle_timer(self.now)
        self.now = end
        self.stack.handle_timer(self.now)
        return self.output()

    def handshake(self, isn: int = 1000, **syn_opts: Any) -> TcpRepr:
        """SYN → SYN-ACK → ACK; returns the SYN-ACK."""
        out = self.send(seq=isn, flags=0x02, **syn_opts)
        assert len(out) == 1, out
        synack = out[0]
        rest = self.send(seq=isn + 1, ack=(synack.seq + 1) & 0xFFFFFFFF, flags=ACK)
        assert rest == [], rest
        return synack


class Pair:
    """A client ``TcpEndpoint`` and the stack, joined by two seeded fault-injecting links."""

    def __init__(
        self,
        chain: StreamChain,
        *,
        config: TcpConfig | None = None,
        client_config: TcpConfig | None = None,
        faults: FaultConfig | None = None,
        seed: int = 7,
        delay: float = 0.001,
    ) -> None:
        self.config = config or TcpConfig()
        self.counters: collections.Counter[str] = collections.Counter()
        self.bus = ListBus()
        rng = seeded(seed)
        self.stack = TcpStack(
            {(VIP, PORT): chain}, self.config, counters=self.counters, bus=self.bus, rng=rng
        )
        f = faults or FaultConfig()
        f = replace(f, delay=max(f.delay, delay))
        self.up = FaultInjector(f, seeded(seed + 1))
        self.down = FaultInjector(f, seeded(seed + 2))
        self.now = 0.0
        self.client = TcpEndpoint.connect(
            client_config or self.config,
            CPORT,
            PORT,
            iss=int.from_bytes(rng(4), "big"),
            mss=1460,
            now=0.0,
        )
        self.received = bytearray()
        self.client_bad = 0

    def step(self) -> bool:
        """One round of delivering what is due; False when nothing happened."""
        busy = False
        for seg in self.client.segments_to_send(self.now):
            self.up.push(seg.emit(CLIENT, VIP), self.now)
            busy = True
        for _src, _dst, raw in self.stack.take_output():
            self.down.push(raw, self.now)
            busy = True
        for raw in self.up.pop_ready(self.now):
            self.stack.receive_tcp(CLIENT, VIP, memoryview(raw), self.now)
            busy = True
        for raw in self.down.pop_ready(self.now):
            busy = True
            if not verify(raw, pseudo_header_sum(VIP, CLIENT, PROTO_TCP, len(raw))):
                self.client_bad += 1
                continue
            try:
                seg = TcpRepr.parse(raw)
            except ValueError:
                self.client_bad += 1
                continue
            self.client.receive_segment(seg, self.now)
        data = self.client.read()
        if data:
            self.received += data
        return busy

    def run(
        self, until: Callable[[], bool], max_time: float = 600.0, max_steps: int = 2_000_000
    ) -> None:
        for _ in range(max_steps):
            if until():
                return
            if self.step():
                continue
            times = [
                t
                for t in (
                    self.client.poll_at(),
                    self.stack.poll_at(),
                    self.up.poll_at(),
                    self.down.poll_at(),
                )
                if t is not None
            ]
            if not times:
                return
            self.now = max(self.now, min(times))
            if self.now > max_time:
                raise AssertionError(f"simulated time limit {max_time}s reached")
            t = self.client.poll_at()
            if t is not None and t <= self.now:
                self.client.handle_timer(self.now)
            self.stack.handle_timer(self.now)
        raise AssertionError("step limit reached")
