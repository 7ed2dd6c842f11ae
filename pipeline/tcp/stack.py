"""The TCP stack: flow table, listeners, SYN backlog and cookies, and the stream-chain glue.

The host stack hands every TCP segment for a virtual IP to ``receive_tcp`` and collects
``take_output()``; ``poll_at()``/``handle_timer()`` drive every flow's timers through one heap,
filed once per wake, and ``timers_moved`` (read after ``take_output``) says when ``poll_at``'s
answer may have moved earlier, the only case in which the loop must ask again.
Each accepted connection gets a fresh stage stack from its listener's ``StreamChain`` once the
handshake completes; in-order bytes go up with ``receive_data``, the peer's FIN as
``receive_eof``, and ``on_close`` is called exactly once. A stage that raises aborts its flow
only (RST, ``tcp.flow`` closed with reason ``plugin_error``, counter ``tcp.plugin_errors``).
"""

from __future__ import annotations

import collections
import functools
import heapq
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.chain import FlowInfo, StreamChain, StreamStage
from pipeline.errors import DecodeError
from pipeline.events import EventBus, wants
from pipeline.tcp.config import TcpConfig
from pipeline.tcp.cookies import TICK, IsnGenerator, SynCookies
from pipeline.tcp.endpoint import TcpEndpoint
from pipeline.tcp.segment import Segment, addr_sum, emit, parse
from pipeline.tcp.seq import MASK
from pipeline.tcp.tcb import CLOSED, SYN_RECEIVED, TIME_WAIT
from pipeline.wire.gso import ChecksumOk, gso
from pipeline.wire.tcp import ACK, HEADER_LEN, PROTO_TCP, RST, SYN, TcpRepr

FlowKey = tuple[bytes, int, bytes, int]  # (client address, client port, vip address, vip port)
Output = tuple[bytes, bytes, bytes]  # (src address, dst address, TCP segment)
_NEVER = float("inf")  # no deadline
GSO_MAX_PAYLOAD = 62000  # payload of one super-segment: IPv4/IPv6 + TCP headers stay < 64 KiB


@functools.lru_cache(maxsize=1024)  # a flow names its client and VIP in two events and FlowInfo
def addr_str(addr: bytes) -> str:
    if len(addr) == 4:  # dotted quad without the ipaddress object (same text)
        return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"
    return str(ipaddress.ip_address(addr))


def endpoint_str(addr: bytes, port: int) -> str:
    return f"{addr_str(addr)}:{port}" if len(addr) == 4 else f"[{addr_str(addr)}]:{port}"


class _Rate:
    """Events per second over the last second: two 1 s buckets, the older one weighted by how
    much of it the last second still covers."""

    __slots__ = ("count", "prev", "second")

    def __init__(self) -> None:
        self.second, self.count, self.prev = 0, 0, 0

    def _roll(self, now: float) -> int:
        second = int(now)
        if second != self.second:
            self.prev = self.count if second == self.second + 1 else 0
            self.second, self.count = second, 0
        return second

    def add(self, now: float) -> None:
        self._roll(now)
        self.count += 1

    def rate(self, now: float) -> float:
        second = self._roll(now)
        return self.count + self.prev * (1.0 - (now - second))


class _Downstream:
    """A stage's way back to the client: the flow's endpoint, and its ``FlowControl``.

    A stage may write from outside the stack's own call (a backend socket's data, in the loop):
    every command marks the flow for service, done by the next ``handle_timer`` (``poll_at``
    is due at once while any flow is marked)."""

    __slots__ = ("ep", "flow", "stack")

    def __init__(self, ep: TcpEndpoint, flow: Flow | None = None, stack: TcpStack | None = None):
        self.ep = ep
        self.flow = flow
        self.stack = stack

    def _kick(self) -> None:
        if self.stack is not None and self.flow is not None:
            self.stack._dirty[self.flow.conn] = self.flow

    def send(self, data: bytes) -> None:
        self.ep.send(data)
        self._kick()

    def close(self) -> None:
        self.ep.close()
        self._kick()

    def abort(self, reason: str) -> None:
        self.ep.abort(reason or "aborted")
        self._kick()

    # ---- FlowControl ---------------------------------------------------------------------
    def pause_reading(self) -> None:
        if self.flow is not None:
            self.flow.paused = True

    def resume_reading(self) -> None:
        if self.flow is not None and self.flow.paused:
            self.flow.paused = False
            self._kick()

    def send_queued(self) -> int:
        return self.ep.send_queued

    def notify_drained(self, low: int, callback: Callable[[float], None]) -> None:
        if self.flow is not None:
            self.flow.drain = (low, callback)
            self._kick()


class Flow:
    __slots__ = (
        "key",
        "ep",
        "chain",
        "stage",
        "info",
        "conn",
        "embryonic",
        "eof_delivered",
        "closed",
        "removed",
        "deadline",
        "token",
        "heap_at",
        "retime",
        "paused",
        "drain",
        "names",
        "addrs",
    )

    def __init__(self, key: FlowKey, ep: TcpEndpoint, chain: StreamChain, conn: int) -> None:
        self.key = key
        self.ep = ep
        self.chain = chain
        self.conn = conn
        self.stage: StreamStage | None = None
        self.info: FlowInfo | None = None
        self.embryonic = ep.state is SYN_RECEIVED
        self.eof_delivered = False
        self.closed = False
        self.removed = False
        self.deadline: float | None = None  # the flow's next timer (endpoint or stage)
        self.token = 0  # token of the flow's live heap entry; older entries are stale
        self.heap_at: float | None = None  # when that entry falls due (<= deadline)
        self.retime = False  # serviced since ``deadline`` was computed (TcpStack._retime)
        self.paused = False  # FlowControl: the stage is fed nothing while set
        self.drain: tuple[int, Callable[[float], None]] | None = None
        self.names: tuple[str, str] | None = None  # "client", "vip" as events show them
        self.addrs = addr_sum(key[0], key[2])  # for the checksums of what we send


class TcpStack:
    """Implements the host stack's ``TransportHandler`` protocol."""

    def __init__(
        self,
        listeners: Mapping[tuple[bytes, int], StreamChain],
        config: TcpConfig,
        *,
        counters: collections.Counter[str],
        bus: EventBus,
        rng: Callable[[int], bytes],
        mtu: int = 1500,
        gso: bool = False,
    ) -> None:
        self.config = config
        # with a segmentation-offloading port, new data leaves in super-segments
        self.gso_max = GSO_MAX_PAYLOAD if gso else 0
        self.counters = counters
        self.bus = bus
        self.rng = rng
        self.mtu = mtu
        self._listeners: dict[tuple[bytes, int], StreamChain] = dict(listeners)
        self._flows: dict[FlowKey, Flow] = {}
        self._time_wait: dict[FlowKey, Flow] = {}  # oldest first: recycled when the table is full
        self._out: list[Output] = []
        # (when, token, flow key): the key, not the flow, so that a flow's state is freed when
        # it is removed, not when its stale entries reach the top
        self._heap: list[tuple[float, int, FlowKey]] = []
        self._dirty: dict[int, Flow] = {}  # flows a stage wrote to between our calls
        self._retime: list[Flow] = []  # flows serviced since their deadline was last filed
        self._token = 0
        # Set when a timer was filed earlier than poll_at's last answer (``_told``; a flow marked
        # for service counts as due now), cleared by poll_at; up to date once take_output ran
        # (deadlines are filed once per wake, ``_retime_flows``). The host stack has the loop
        # ask for a new deadline only then: a timer filed later than that answer, or one that
        # went away, leaves the loop's deadline early, never late, and costs one handle_timer
        # call with nothing due.
        self.timers_moved = False
        self._told = _NEVER
        self._conn_ids = 0
        self._embryonic = 0
        self._isn = IsnGenerator(rng)
        self._cookies = SynCookies(rng)
        self._cookies_until = -1.0
        self._syns = _Rate()  # SYNs that would open a flow
        self._handshakes = _Rate()  # handshakes those SYNs completed (cookie or backlog)
        self._now = 0.0

    # ---- configuration / inspection --------------------------------------------------------
    def set_listeners(self, listeners: Mapping[tuple[bytes, int], StreamChain]) -> None:
        """Replace the listeners; established flows keep the chain they started with."""
        self._listeners = dict(listeners)

    def flows(self) -> list[dict[str, Any]]:
        """Plain-data view of every flow for the control channel (never payload)."""
        out = []
        for f in self._flows.values():
            ep = f.ep
            out.append(
                {
                    "conn": f.conn,
                    "client": endpoint_str(f.key[0], f.key[1]),
                    "vip": endpoint_str(f.key[2], f.key[3]),
                    "state": ep.state.value,
                    "bytes_in": ep.bytes_in,
                    "bytes_out": ep.bytes_out,
                    "age": round(self._now - ep.created, 3),
                }
            )
        return out

    def __len__(self) -> int:
        return len(self._flows)

    # ---- TransportHandler ------------------------------------------------------------------
    def receive_tcp(self, src: bytes, dst: bytes, segment: memoryview, now: float) -> None:
        self._now = now
        n = len(segment)
        if n < HEADER_LEN:
            self.counters["drop.tcp_truncated"] += 1
            return
        if not isinstance(getattr(segment, "obj", None), ChecksumOk):
            # RFC 1071 as arithmetic: 2^16 = 1 (mod 0xFFFF), so the one's-complement sum of the
            # pseudo-header and the segment is the residue of their integers (checksum.ones_sum);
            # a correct segment sums to zero. IPv4 and IPv6 pseudo-headers sum alike. The
            # segment's integer is reduced first: one pass over it, no big shift or sum.
            total = int.from_bytes(segment, "big") % 0xFFFF << (8 if n & 1 else 0)
            total += int.from_bytes(src, "big") + int.from_bytes(dst, "big") + PROTO_TCP + n
            if total % 0xFFFF:
                self.counters["drop.bad_checksum"] += 1
                return
        try:
            seg = parse(segment)
        except DecodeError:
            self.counters["drop.tcp_malformed"] += 1
            return
        self.counters["tcp.segments_in"] += 1
        flow = self._flows.get((src, seg.src_port, dst, seg.dst_port))
        if flow is not None:
            if flow.ep.state is TIME_WAIT and seg.flags & (SYN | ACK | RST) == SYN:
                self._remove(flow)  # a new incarnation of the four-tuple (RFC 6191 style)
            else:
                try:
                    flow.ep.receive_segment(seg, now)
                    self._service(flow, now)
                except Exception:
                    self._internal_error(flow, now)
                return
        try:
            self._no_flow(src, dst, seg, now)
        except Exception:
            self.counters["tcp.internal_errors"] += 1

    def take_output(self) -> list[Output]:
        if self._retime:
            self._retime_flows()
        if self._dirty:  # a stage wrote to a flow outside our calls: poll_at is due at once
            self.timers_moved = True
        out, self._out = self._out, []
        return out

    def poll_at(self) -> float | None:
        if self._retime:
            self._retime_flows()
        self.timers_moved = False
        if self._dirty:
            self._told = self._now
            return self._now
        heap = self._heap
        while heap:
            at, token, key = heap[0]
            flow = self._live(token, key)
            if flow is None:
                heapq.heappop(heap)
                continue
            deadline = flow.deadline
            if deadline is None:  # the timer went away since the entry was filed
                heapq.heappop(heap)
                flow.heap_at = None
                continue
            if deadline > at:  # it moved later since: file it again, once, now (not _file:
                # this is the answer being made, timers_moved stays clear)
                self._token += 1
                flow.token = self._token
                flow.heap_at = deadline
                heapq.heapreplace(heap, (deadline, self._token, key))
                continue
            self._told = at
            return at
        self._told = _NEVER
        return None

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self._retime:
            self._retime_flows()
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            for flow in dirty.values():
                if not flow.removed:
                    try:
                        self._service(flow, now)
                    except Exception:
                        self._internal_error(flow, now)
        heap, flows = self._heap, self._flows
        due: list[Flow] = []
        while heap and heap[0][0] <= now:
            _, token, key = heapq.heappop(heap)
            f = self._live(token, key)
            if f is None:
                continue  # a stale entry
            f.heap_at = None
            deadline = f.deadline
            if deadline is None:
                continue
            if deadline > now:  # moved later since the entry was filed
                self._file(f, deadline)
                continue
            f.deadline = None
            due.append(f)
        for flow in due:
            if flow.removed:
                continue
            try:
                t = flow.ep.poll_at()
                if t is not None and t <= now:
                    flow.ep.handle_timer(now)
                stage = flow.stage
                if stage is not None and not flow.closed:
                    try:
                        st = stage.poll_at()
                        if st is not None and st <= now:
                            stage.handle_timer(now)
                    except Exception:
                        self._plugin_error(flow, now)
                self._service(flow, now)
            except Exception:
                self._internal_error(flow, now)
        if len(heap) > 2 * len(flows) + 1024:
            self._heap = [e for e in heap if self._live(e[1], e[2]) is not None]
            heapq.heapify(self._heap)

    # ---- flow servicing --------------------------------------------------------------------
    def _service(self, flow: Flow, now: float) -> None:
        """Events, the stage's bytes, segments out, close/removal and the next deadline: run
        after everything that may have changed a flow (a segment in, a timer, a stage's write).
        """
        ep = flow.ep
        ev = ep.next_event()
        while ev is not None:
            kind = ev[0]
            if kind == "connected":
                if flow.embryonic:
                    flow.embryonic = False
                    self._embryonic -= 1
                    self._handshakes.add(now)
                self._open(flow, now)
            elif kind == "anomaly":
                self.bus.emit(
                    "tcp.anomaly",
                    {"conn": flow.conn, "kind": ev[1], "seq": ev[2], "length": ev[3]},
                )
            ev = ep.next_event()
        stage = flow.stage
        if stage is not None and not flow.closed and ep.state is not CLOSED:
            cfg = self.config
            try:
                drain = flow.drain
                if drain is not None and ep.send_queued <= drain[0]:
                    flow.drain = None
                    drain[1](now)
                while not flow.paused and ep.readable and ep.send_queued < cfg.send_buffer:
                    stage.receive_data(ep.read(), now)
                    if ep.state is CLOSED:  # the stage aborted
                        break
                if (
                    ep.eof_received
                    and not flow.eof_delivered
                    and not ep.readable
                    and ep.state is not CLOSED
                ):
                    flow.eof_delivered = True
                    stage.receive_eof(now)
            except Exception:
                self._plugin_error(flow, now)
            if ep.send_queued > cfg.send_buffer_hard:
                self.counters["tcp.send_buffer_overflows"] += 1
                ep.abort("send_buffer_overflow")
        if self._dirty:
            self._dirty.pop(flow.conn, None)  # serviced now
        segs = ep.segments_to_send(now)
        if segs:
            client, vip = flow.key[0], flow.key[2]
            addrs = flow.addrs
            out = self._out
            room = ep.mss - (12 if ep.ts_ok else 0) if ep.gso_max else 1 << 30
            for seg in segs:
                if len(seg.payload) > room:  # the kernel cuts it and computes the checksums
                    out.append((vip, client, gso(seg.emit(vip, client, partial=True), room)))
                else:
                    out.append((vip, client, emit(seg, vip, client, addrs)))
            self.counters["tcp.segments_out"] += len(segs)
        state = ep.state
        if state is CLOSED or state is TIME_WAIT:
            if not flow.closed:
                self._close(flow, ep.close_reason or "closed", now)
            if state is CLOSED:
                self._remove(flow)
                return
            if flow.key not in self._time_wait:
                self._time_wait[flow.key] = flow
        if not flow.retime:
            flow.retime = True
            self._retime.append(flow)

    def _retime_flows(self) -> None:
        """The next deadline of every flow serviced since the last call, before the heap is
        read or output taken: once per wake, not per segment (a short connection's segments
        come several to a wake, the last ones with the RST that removes its flow).

        A heap entry is filed only when the deadline is earlier than the flow's live entry: a
        deadline that moves later (idle timer, RTO re-armed by an ACK) keeps its entry, which is
        filed again at the new time when it reaches the top (poll_at)."""
        retime, self._retime = self._retime, []
        for flow in retime:
            flow.retime = False
            if flow.removed:
                continue
            try:
                d = flow.ep.poll_at()
                stage = flow.stage
                if stage is not None and not flow.closed:
                    try:
                        sd = stage.poll_at()
                    except Exception:
                        sd = None
                    if sd is not None and (d is None or sd < d):
                        d = sd
                flow.deadline = d
                if d is not None:
                    at = flow.heap_at
                    if at is None or d < at:
                        self._file(flow, d)
            except Exception:
                self._internal_error(flow, self._now)

    def _live(self, token: int, key: FlowKey) -> Flow | None:
        """The flow a heap entry files, or None when the entry is stale (the flow is gone, or
        filed again since: a new flow under the same key starts with an older token)."""
        flow = self._flows.get(key)
        return flow if flow is not None and flow.token == token else None

    def _file(self, flow: Flow, at: float) -> None:
        """A heap entry for ``flow`` at ``at``; the flow's older entries become stale."""
        self._token += 1
        flow.token = self._token
        flow.heap_at = at
        heapq.heappush(self._heap, (at, self._token, flow.key))
        if at < self._told:
            self.timers_moved = True

    def _open(self, flow: Flow, now: float) -> None:
        client, cport, vip, vport = flow.key
        caddr, vaddr = addr_str(client), addr_str(vip)
        flow.names = (
            f"{caddr}:{cport}" if len(client) == 4 else f"[{caddr}]:{cport}",
            f"{vaddr}:{vport}" if len(vip) == 4 else f"[{vaddr}]:{vport}",
        )
        flow.info = FlowInfo(
            conn=flow.conn,
            client=(caddr, cport),
            vip=(vaddr, vport),
            vs=str(getattr(flow.chain, "name", "")),
        )
        self.counters["tcp.flows_opened"] += 1
        if wants(self.bus, "tcp.flow"):  # no collector, no capture: the fields are not built
            self.bus.emit("tcp.flow", self._flow_fields(flow, "opened", None, now))
        try:
            down = _Downstream(flow.ep, flow, self)
            flow.info.control = down
            flow.stage = flow.chain.new_connection()
            flow.stage.on_open(flow.info, down, now)
        except Exception:
            self._plugin_error(flow, now)

    def _internal_error(self, flow: Flow, now: float) -> None:
        """A bug of ours met this flow: drop it (RST if we still can), never the loop.
        Tests assert ``tcp.internal_errors`` stays zero."""
        self.counters["tcp.internal_errors"] += 1
        try:
            flow.ep.abort("internal_error")
            client, vip = flow.key[0], flow.key[2]
            for seg in flow.ep.segments_to_send(now):
                self._out.append((vip, client, emit(seg, vip, client, flow.addrs)))
        except Exception:
            pass
        self._remove(flow)

    def _plugin_error(self, flow: Flow, now: float) -> None:
        self.counters["tcp.plugin_errors"] += 1
        flow.ep.abort("plugin_error")

    def _close(self, flow: Flow, reason: str, now: float) -> None:
        flow.closed = True
        if flow.info is None:  # never got past the handshake
            self.counters["tcp.embryonic_closed"] += 1
            return
        self.counters["tcp.flows_closed"] += 1
        stage, flow.stage = flow.stage, None
        if stage is not None:
            try:
                stage.on_close(reason, now)
            except Exception:
                self.counters["tcp.plugin_errors"] += 1
        if wants(self.bus, "tcp.flow"):
            self.bus.emit("tcp.flow", self._flow_fields(flow, "closed", reason, now))
        # Let the stages' state (a TLS connection...) go now, not when TIME-WAIT ends: nothing
        # is fed to them any more, and flow -> stage -> downstream -> flow was a cycle that only
        # a full garbage collection would free after it had aged 2 s in TIME-WAIT.
        control = flow.info.control
        if isinstance(control, _Downstream):
            control.flow = None

    def _remove(self, flow: Flow) -> None:
        if flow.removed:
            return
        flow.removed = True
        if flow.embryonic:
            flow.embryonic = False
            self._embryonic -= 1
        if not flow.closed:
            self._close(flow, flow.ep.close_reason or "closed", self._now)
        self._flows.pop(flow.key, None)
        if self._time_wait.get(flow.key) is flow:
            del self._time_wait[flow.key]
        # Its entries are stale now: those on top go at once, as poll_at would drop them (the
        # heap stays as small as the live flows' timers when poll_at is seldom asked)
        heap = self._heap
        while heap and self._live(heap[0][1], heap[0][2]) is None:
            heapq.heappop(heap)

    def _flow_fields(
        self, flow: Flow, action: str, reason: str | None, now: float
    ) -> dict[str, Any]:
        names = flow.names
        if names is None:
            names = (endpoint_str(flow.key[0], flow.key[1]), endpoint_str(flow.key[2], flow.key[3]))
        ep = flow.ep
        fields: dict[str, Any] = {  # built only when someone wants the event
            "conn": flow.conn,
            "action": action,
            "client": names[0],
            "vip": names[1],
        }
        fields.update(ep.stats())
        fields["duration_s"] = round(now - ep.created, 6)
        fields["reason"] = reason
        return fields

    # ---- segments without a flow -----------------------------------------------------------
    def _no_flow(self, src: bytes, dst: bytes, seg: Segment, now: float) -> None:
        flags = seg.flags
        if flags & RST:
            return
        chain = self._listeners.get((dst, seg.dst_port))
        if chain is None:
            self.counters["tcp.rst_closed_port"] += 1
            self._reply_rst(src, dst, seg)
            return
        if flags & SYN and not flags & ACK:
            self._syn(src, dst, seg, chain, now)
            return
        if flags & ACK and not flags & SYN and now <= self._cookies_until:
            mss = self._cookies.check(
                src,
                seg.src_port,
                dst,
                seg.dst_port,
                (seg.seq - 1) & MASK,
                (seg.ack - 1) & MASK,
                now,
            )
            if mss is not None and len(self._flows) < self.config.max_flows:
                self.counters["tcp.syn_cookies_accepted"] += 1
                self._handshakes.add(now)
                ep = TcpEndpoint.from_cookie(
                    self.config,
                    seg,
                    mss,
                    iss=(seg.ack - 1) & MASK,
                    mss=self._local_mss(dst),
                    now=now,
                    counters=self.counters,
                )
                flow = self._add_flow((src, seg.src_port, dst, seg.dst_port), ep, chain)
                ep.receive_segment(seg, now)
                self._service(flow, now)
                return
            if mss is None:
                self.counters["tcp.syn_cookies_invalid"] += 1
        self.counters["tcp.rst_no_flow"] += 1
        self._reply_rst(src, dst, seg)

    def _syn(self, src: bytes, dst: bytes, seg: Segment, chain: StreamChain, now: float) -> None:
        cfg = self.config
        self._syns.add(now)
        # A flood is SYNs that do not complete their handshake: a client opening thousands of
        # connections a second that all complete is not one (it would lose window scaling,
        # SACK and timestamps to cookies), spoofed SYNs are.
        unanswered = self._syns.rate(now) - self._handshakes.rate(now)
        if len(self._flows) >= cfg.max_flows and self._time_wait:
            self.counters["tcp.time_wait_recycled"] += 1
            self._remove(next(iter(self._time_wait.values())))
        if len(self._flows) >= cfg.max_flows:
            self.counters["tcp.refused_max_flows"] += 1
            self._reply_rst(src, dst, seg)
            return
        flood = unanswered > cfg.syn_cookie_threshold or self._embryonic >= cfg.syn_backlog
        if flood and cfg.syn_cookies:
            cookie = self._cookies.make(
                src, seg.src_port, dst, seg.dst_port, seg.seq, seg.mss or 536, now
            )
            synack = TcpRepr(
                seg.dst_port,
                seg.src_port,
                cookie,
                (seg.seq + 1) & MASK,
                SYN | ACK,
                min(cfg.recv_buffer, 0xFFFF),
                mss=self._local_mss(dst),
            )
            self._out.append((dst, src, emit(synack, dst, src)))
            self.counters["tcp.segments_out"] += 1
            self.counters["tcp.syn_cookies_sent"] += 1
            self._cookies_until = now + 2 * TICK
            return
        if self._embryonic >= cfg.syn_backlog:
            self.counters["tcp.syn_backlog_full"] += 1
            return
        ep = TcpEndpoint.accept(
            cfg,
            seg,
            iss=self._isn.isn(src, seg.src_port, dst, seg.dst_port, now),
            mss=self._local_mss(dst),
            now=now,
            ts_offset=int.from_bytes(self.rng(4), "big"),
            counters=self.counters,
        )
        flow = self._add_flow((src, seg.src_port, dst, seg.dst_port), ep, chain)
        flow.embryonic = True
        self._embryonic += 1
        self._service(flow, now)

    def _add_flow(self, key: FlowKey, ep: TcpEndpoint, chain: StreamChain) -> Flow:
        self._conn_ids += 1
        ep.gso_max = self.gso_max
        flow = Flow(key, ep, chain, self._conn_ids)
        flow.embryonic = False
        self._flows[key] = flow
        return flow

    def _local_mss(self, addr: bytes) -> int:
        return self.mtu - (40 if len(addr) == 4 else 60)

    def _reply_rst(self, src: bytes, dst: bytes, seg: Segment) -> None:
        """RFC 9293 §3.10.7.1: RST for a segment that belongs to no connection."""
        if seg.flags & ACK:
            rst = TcpRepr(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            rst = TcpRepr(seg.dst_port, seg.src_port, 0, (seg.seq + seg.seg_len) & MASK, RST | ACK)
        self.counters["tcp.rst_sent"] += 1
        self.counters["tcp.segments_out"] += 1
        self._out.append((dst, src, emit(rst, dst, src)))


__all__ = ["Flow", "TcpStack", "endpoint_str"]
