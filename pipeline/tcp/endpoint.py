"""The TCP endpoint: one connection's sans-IO state machine (RFC 9293; model: smoltcp's socket).

``receive_segment(seg, now)`` takes a parsed segment; ``segments_to_send(now)`` returns what is due;
``poll_at()``/``handle_timer(now)`` drive retransmission, delayed ACK, zero-window probes,
TIME-WAIT, idle and keep-alive. The application side is ``read()``, ``send()``, ``close()`` and
``abort()``; ``next_event()`` reports ``connected``, ``eof``, ``closed`` and ``anomaly``.

Sequence variables (``snd_*``, ``rcv_*``, ``iss``, ``irs``) are *unwrapped* ints: they start at
their 32-bit ISN and keep growing. Wire values are ``wire(x)``; incoming numbers are ``unwrap``-ed
next to the variable they are compared with (``seq.py``), so wrap-around is handled at the edge.
"""

from __future__ import annotations

import collections
from collections import deque
from enum import Enum
from typing import Any

from pipeline.tcp.assembler import Reassembler
from pipeline.tcp.config import TcpConfig
from pipeline.tcp.rtt import RttEstimator
from pipeline.tcp.seq import MASK, seq_diff, unwrap, wire
from pipeline.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpRepr

DEFAULT_MSS = 536  # RFC 9293 §3.7.1: assumed when the peer sends no MSS option
MAX_CWND = 1 << 30
# A data segment whose TSval is older than TS.Recent by at most this many peer clock ticks, and
# which carries new in-window data, is a reordered segment, not a wrapped old duplicate: PAWS
# lets it through (strict PAWS turned every 2 ms reordering after a retransmission into a loss).
PAWS_REORDER_TICKS = 1000


class State(Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


# States in which we may still send new data / in which the peer may still send data.
SEND_OPEN = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
RECV_OPEN = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
FIN_SENT_STATES = frozenset({State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK})


def window_scale_for(buffer: int) -> int:
    ws = 0
    while (buffer >> ws) > 0xFFFF and ws < 14:
        ws += 1
    return ws


class TcpEndpoint:
    """One TCP connection. Build with ``accept()`` (passive), ``connect()`` or ``from_cookie()``."""

    def __init__(
        self,
        config: TcpConfig,
        local_port: int,
        remote_port: int,
        *,
        iss: int,
        mss: int,
        now: float,
        ts_offset: int = 0,
        counters: collections.Counter[str] | None = None,
    ) -> None:
        self.config = config
        self.local_port = local_port
        self.remote_port = remote_port
        self.counters: collections.Counter[str] = (
            counters if counters is not None else collections.Counter()
        )
        self.state = State.CLOSED
        self.created = now
        self.local_mss = mss
        self.ts_offset = ts_offset & MASK
        # send sequence space
        self.iss = iss & MASK
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self.snd_wnd = 0
        self.max_snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.snd_wscale = 0
        self.mss = min(DEFAULT_MSS, mss)
        # Queued bytes are sbuf[sbuf_head:]; acknowledged bytes are dropped lazily (compacting
        # when the dead prefix dominates), so trimming stays amortised O(1) per byte.
        self.sbuf = bytearray()
        self.sbuf_head = 0
        self.sbuf_start = self.iss + 1  # sequence number of sbuf[sbuf_head]
        self.fin_queued = False
        # receive sequence space
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0  # right edge of the window last advertised
        self.rcv_wscale = 0
        self.reasm = Reassembler(0, config.ooo_max_bytes, config.ooo_max_segments, 0)
        self.fin_rcv: int | None = None  # sequence number of the peer's FIN once seen
        self.eof_received = False
        # options
        self.sack_ok = False
        self.ts_ok = False
        self.ts_recent = 0
        # timers and retransmission
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.rtx_at: float | None = None
        self.ack_at: float | None = None
        self.persist_at: float | None = None
        self.tw_at: float | None = None
        self.idle_at: float | None = now + config.idle_timeout
        self.ka_at: float | None = None
        self.ka_sent = 0
        self.retries = 0
        self.timing: tuple[int, float] | None = None  # (sequence number timed, sent at)
        self.cwnd = 0
        self.ssthresh = MAX_CWND
        self.dupacks = 0
        self.recover: int | None = None
        self._fast_rtx = False
        self._probes = 0
        self._sws_blocked = False
        self._sws_override = False
        self._ack_now = False
        self._unacked_segs = 0
        self._urgent: list[TcpRepr] = []  # RSTs and keep-alive probes, sent first
        self.ws_ok = False
        self._events: deque[tuple[Any, ...]] = deque()
        self.close_reason: str | None = None
        # statistics
        self.bytes_in = self.bytes_out = 0
        self.segs_in = self.segs_out = 0
        self.retransmits = 0
        self.ooo_segments = 0
        self.overlap_conflicts = 0

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def accept(cls, config: TcpConfig, syn: TcpRepr, **kw: Any) -> TcpEndpoint:
        """Passive open from a received SYN: SYN-RECEIVED with a SYN-ACK due."""
        ep = cls(config, syn.dst_port, syn.src_port, **kw)
        ep._init_receive(syn.seq)
        if syn.mss:
            ep.mss = min(syn.mss, ep.local_mss)
        if syn.wscale is not None and config.window_scaling:
            ep.ws_ok = True
            ep.snd_wscale = syn.wscale
            ep.rcv_wscale = window_scale_for(config.recv_buffer)
        ep.sack_ok = syn.sack_permitted and config.sack
        if syn.timestamp is not None and config.timestamps:
            ep.ts_ok = True
            ep.ts_recent = syn.timestamp[0]
        ep.snd_wnd = ep.max_snd_wnd = syn.window
        ep.snd_wl1 = ep.irs
        ep.state = State.SYN_RECEIVED
        ep.counters["tcp.syn_received"] += 1
        return ep

    @classmethod
    def connect(
        cls, config: TcpConfig, local_port: int, remote_port: int, **kw: Any
    ) -> TcpEndpoint:
        """Active open: SYN-SENT with a SYN due (used by in-process peers and tests)."""
        ep = cls(config, local_port, remote_port, **kw)
        ep.state = State.SYN_SENT
        return ep

    @classmethod
    def from_cookie(
        cls, config: TcpConfig, ack_seg: TcpRepr, peer_mss: int, **kw: Any
    ) -> TcpEndpoint:
        """ESTABLISHED straight from the ACK that returned a valid SYN cookie (``iss`` = cookie)."""
        ep = cls(config, ack_seg.dst_port, ack_seg.src_port, **kw)
        ep._init_receive((ack_seg.seq - 1) & MASK)
        ep.mss = min(peer_mss, ep.local_mss)
        ep.snd_una = ep.snd_nxt = ep.snd_max = ep.iss + 1
        ep.snd_wnd = ep.max_snd_wnd = ack_seg.window
        ep.snd_wl1, ep.snd_wl2 = ep.irs, ep.snd_una
        ep.rcv_adv = ep.rcv_nxt + min(config.recv_buffer, 0xFFFF)
        ep._established()
        return ep

    def _init_receive(self, irs: int) -> None:
        self.irs = irs
        self.rcv_nxt = irs + 1
        self.rcv_adv = self.rcv_nxt
        self.reasm = Reassembler(
            self.rcv_nxt,
            self.config.ooo_max_bytes,
            self.config.ooo_max_segments,
            self.config.overlap_history,
        )

    def _established(self) -> None:
        self.state = State.FIN_WAIT_1 if self.fin_queued else State.ESTABLISHED
        self.cwnd = self.config.initial_window * self.mss
        self.rtt.restore()
        self._events.append(("connected",))

    # ---- application side ----------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes toward the peer (ignored once our side is closed)."""
        if self.state in SEND_OPEN or self.state in (State.SYN_RECEIVED, State.SYN_SENT):
            if not self.fin_queued:
                self.sbuf += data

    def close(self) -> None:
        """Orderly close: FIN after the queued bytes."""
        st = self.state
        if st in (State.SYN_SENT, State.LISTEN):
            self._finish(State.CLOSED, "aborted")
        elif st in (State.ESTABLISHED, State.SYN_RECEIVED):
            self.fin_queued = True
            if st is State.ESTABLISHED:
                self.state = State.FIN_WAIT_1
        elif st is State.CLOSE_WAIT:
            self.fin_queued = True
            self.state = State.LAST_ACK

    def abort(self, reason: str = "aborted") -> None:
        """Send RST now and close."""
        if self.state in (State.CLOSED, State.TIME_WAIT, State.LISTEN):
            return
        if self.state is not State.SYN_SENT:
            self._urgent.append(
                TcpRepr(self.local_port, self.remote_port, wire(self.snd_max), 0, RST, 0)
            )
        self._finish(State.CLOSED, reason)

    def read(self, limit: int | None = None) -> bytes:
        """In-order bytes received and not read yet; may open the window (window update)."""
        if not self.reasm.ready_bytes:
            return b""
        before = self.rcv_adv - self.rcv_nxt
        data = self.reasm.read(limit)
        if before < self.config.recv_buffer // 2 and self._window() >= before + 2 * self.mss:
            self._ack_now = True
        return data

    @property
    def readable(self) -> int:
        return self.reasm.ready_bytes

    @property
    def send_queued(self) -> int:
        """Bytes queued toward the peer and not yet acknowledged."""
        return len(self.sbuf) - self.sbuf_head

    def next_event(self) -> tuple[Any, ...] | None:
        return self._events.popleft() if self._events else None

    # ---- receiving -----------------------------------------------------------------------
    def receive_segment(self, seg: TcpRepr, now: float) -> None:
        self.segs_in += 1
        st = self.state
        if st is State.CLOSED or st is State.LISTEN:
            return
        if st is State.SYN_SENT:
            self._rx_syn_sent(seg, now)
            return
        flags = seg.flags
        seq = unwrap(seg.seq, self.rcv_nxt)
        plen = len(seg.payload)
        if self.ts_ok and seg.timestamp is not None and not flags & RST:
            behind = seq_diff(self.ts_recent, seg.timestamp[0])
            if behind > 0 and not (
                plen and seq + plen > self.rcv_nxt and behind <= PAWS_REORDER_TICKS
            ):  # PAWS (RFC 7323 §5), tolerant of new data merely reordered
                self.counters["tcp.paws_drops"] += 1
                self._ack_now = True
                return
        if st is State.SYN_RECEIVED and flags & SYN and not flags & ACK and seq == self.irs:
            self.snd_nxt = self.iss  # retransmitted SYN: send the SYN-ACK again
            return
        if not self._acceptable(seq, seg.seg_len):
            if flags & ACK and not flags & (RST | SYN) and self.rcv_adv <= self.rcv_nxt:
                # RFC 9293 §3.10.7.4: with a zero window, valid ACKs are still processed
                if st is not State.SYN_RECEIVED:
                    self._rx_ack(seg, seq, unwrap(seg.ack, self.snd_una), 0, now)
            if not flags & RST and self.state is not State.CLOSED:
                if plen and seq < self.rcv_nxt:
                    self.reasm.check_old(seq, seg.payload)
                    self._take_conflicts()
                self._ack_now = True
                if st is State.TIME_WAIT and flags & FIN:
                    self.tw_at = now + self.config.time_wait
            return
        if st is not State.TIME_WAIT:
            self.idle_at = now + self.config.idle_timeout
            if self.config.keepalive:
                self.ka_at, self.ka_sent = now + self.config.keepalive, 0
        if flags & RST:
            self._rx_rst(seq)
            return
        if flags & SYN:  # RFC 5961 §4: any SYN in a synchronized state gets a challenge ACK
            self._challenge()
            return
        if not flags & ACK:
            return
        ack = unwrap(seg.ack, self.snd_una)
        if st is State.SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_max:
                self._urgent.append(TcpRepr(self.local_port, self.remote_port, seg.ack, 0, RST, 0))
                return
            self._established()
            st = State.ESTABLISHED
        if not self._rx_ack(seg, seq, ack, plen, now):
            return
        st = self.state
        if st is State.CLOSED:
            return
        if self.ts_ok and seg.timestamp is not None and seq <= self.rcv_nxt:
            if seq_diff(seg.timestamp[0], self.ts_recent) > 0:
                self.ts_recent = seg.timestamp[0]
        if plen and st in RECV_OPEN:
            self._rx_data(seq, seg.payload, now)
        if flags & FIN and st not in (State.CLOSE_WAIT, State.LAST_ACK, State.CLOSING):
            fin_at = seq + plen
            if fin_at <= self.rcv_adv or fin_at == self.rcv_nxt:
                self.fin_rcv = fin_at
            if st is State.TIME_WAIT:
                self._ack_now = True
                self.tw_at = now + self.config.time_wait
        if self.fin_rcv is not None and not self.eof_received and self.reasm.nxt == self.fin_rcv:
            self._rx_fin(now)

    def _acceptable(self, seq: int, seg_len: int) -> bool:
        """RFC 9293 §3.10.7.4 acceptance test against the window we advertised."""
        wnd = max(self.rcv_adv - self.rcv_nxt, 0)
        nxt = self.rcv_nxt
        if seg_len == 0:
            return seq == nxt if wnd == 0 else nxt <= seq < nxt + wnd
        if wnd == 0:
            return False
        last = seq + seg_len - 1
        return nxt <= seq < nxt + wnd or nxt <= last < nxt + wnd

    def _rx_rst(self, seq: int) -> None:
        if seq == self.rcv_nxt:
            self._finish(State.CLOSED, "rst_received")
        else:  # RFC 5961 §3.2: in window but not exact
            self._challenge()

    def _challenge(self) -> None:
        self.counters["tcp.challenge_acks"] += 1
        self._ack_now = True

    def _rx_syn_sent(self, seg: TcpRepr, now: float) -> None:
        flags = seg.flags
        ack = unwrap(seg.ack, self.snd_una)
        if flags & ACK and not self.iss < ack <= self.snd_max:
            if not flags & RST:
                self._urgent.append(TcpRepr(self.local_port, self.remote_port, seg.ack, 0, RST, 0))
            return
        if flags & RST:
            if flags & ACK:
                self._finish(State.CLOSED, "rst_received")
            return
        if not flags & SYN or not flags & ACK:
            return
        self._init_receive(seg.seq)
        self.mss = min(seg.mss or DEFAULT_MSS, self.local_mss)
        if seg.wscale is not None and self.ws_ok:
            self.snd_wscale = seg.wscale
        else:
            self.ws_ok = False
            self.rcv_wscale = 0
        self.sack_ok = seg.sack_permitted and self.config.sack
        self.ts_ok = seg.timestamp is not None and self.config.timestamps
        if seg.timestamp is not None:
            self.ts_recent = seg.timestamp[0]
        self.snd_una = ack
        self.snd_wnd = self.max_snd_wnd = seg.window
        self.snd_wl1, self.snd_wl2 = self.irs, ack
        self.rtx_at = None
        if self.timing is not None:
            self.rtt.sample(now - self.timing[1])
            self.timing = None
        self._established()
        self._ack_now = True

    def _rx_ack(self, seg: TcpRepr, seq: int, ack: int, plen: int, now: float) -> bool:
        """ACK processing; False when the segment must be dropped."""
        if ack > self.snd_max:
            self._ack_now = True  # acknowledges something not yet sent
            return False
        if ack < self.snd_una - max(self.max_snd_wnd, 1):
            self._challenge()  # RFC 5961 §5.2: too old
            return False
        window = seg.window << self.snd_wscale
        flight = self.snd_max - self.snd_una
        if ack > self.snd_una:
            self._new_ack(ack, now, seg)
        elif (
            ack == self.snd_una
            and plen == 0
            and not seg.flags & FIN
            and window == self.snd_wnd
            and window > 0
            and flight > 0
        ):
            self._dup_ack()
        elif ack == self.snd_una and window == 0:
            self.retries = 0  # the peer answers our zero-window probes
        if seg.sack_blocks and self.sack_ok and ack == self.snd_una and flight > 0:
            self._sack_loss(seg, ack)
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            self.snd_wnd = window
            self.snd_wl1, self.snd_wl2 = seq, ack
            if window > self.max_snd_wnd:
                self.max_snd_wnd = window
        if self.snd_wnd and self.persist_at is not None:
            self.persist_at = None
        if self.fin_queued and ack == self._data_end() + 1:
            st = self.state
            if st is State.FIN_WAIT_1:
                self.state = State.FIN_WAIT_2
            elif st is State.CLOSING:
                self._time_wait(now)
            elif st is State.LAST_ACK:
                self._finish(State.CLOSED, "fin")
                return False
        return True

    def _new_ack(self, ack: int, now: float, seg: TcpRepr) -> None:
        acked = ack - self.snd_una
        cut = min(ack, self._data_end()) - self.sbuf_start
        if cut > 0:
            self.sbuf_head += cut
            self.sbuf_start += cut
            self.bytes_out += cut
            head = self.sbuf_head
            if head >= 65536 and head * 2 >= len(self.sbuf):
                del self.sbuf[:head]
                self.sbuf_head = 0
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        if self.ts_ok and seg.timestamp is not None and seg.timestamp[1]:
            r = ((self._tsval(now) - seg.timestamp[1]) & MASK) / 1000.0
            if r < 60:
                self.rtt.sample(r)
            self.timing = None
        elif self.timing is not None and ack > self.timing[0]:
            self.rtt.sample(now - self.timing[1])
            self.timing = None
        else:
            self.rtt.restore()
        self.retries = 0
        self.dupacks = 0
        mss = self.mss
        if self.recover is not None:
            if ack >= self.recover:
                self.cwnd = self.ssthresh
                self.recover = None
            else:  # NewReno partial ACK (RFC 6582): retransmit the next hole
                self._fast_rtx = True
                self.cwnd = max(self.cwnd - acked + mss, mss)
        elif self.cwnd < self.ssthresh:
            self.cwnd = min(self.cwnd + min(acked, mss), MAX_CWND)
        else:
            self.cwnd = min(self.cwnd + max(1, mss * mss // self.cwnd), MAX_CWND)
        self.rtx_at = None if self.snd_una >= self.snd_max else now + self.rtt.rto

    def _sack_loss(self, seg: TcpRepr, ack: int) -> None:
        """RFC 6675 style loss detection: enough bytes SACKed above ``snd_una`` mean the
        first unacknowledged segment is lost, whether or not the ACKs carried data."""
        if self.recover is not None:
            return
        sacked = 0
        for left, right in seg.sack_blocks:
            lo = max(unwrap(left, ack), ack)
            hi = min(unwrap(right, ack), self.snd_max)
            if hi > lo:
                sacked += hi - lo
        if sacked > 2 * self.mss:
            self._enter_recovery()

    def _enter_recovery(self) -> None:
        self.counters["tcp.fast_retransmits"] += 1
        flight = self.snd_max - self.snd_una
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss
        self.recover = self.snd_max
        self._fast_rtx = True

    def _dup_ack(self) -> None:
        self.dupacks += 1
        if self.recover is not None:
            self.cwnd += self.mss
        elif self.dupacks == 3:
            self._enter_recovery()

    def _rx_data(self, seq: int, payload: bytes | memoryview, now: float) -> None:
        reasm = self.reasm
        end = seq + len(payload)
        if end > self.rcv_adv:  # trim what lies past the window we announced
            payload = payload[: max(self.rcv_adv - seq, 0)]
        if seq > reasm.nxt:
            self.ooo_segments += 1
            self._ack_now = True
        had_holes = reasm.ooo_chunks
        refused = reasm.refused
        got = reasm.add(seq, payload)
        if reasm.refused != refused:
            self.counters["tcp.ooo_refused_bytes"] += reasm.refused - refused
        self._take_conflicts()
        if got:
            self.rcv_nxt = reasm.nxt
            self.bytes_in += got
            if had_holes:
                self._ack_now = True
            else:
                self._unacked_segs += 1
                if self._unacked_segs >= 2:
                    self._ack_now = True
                elif self.ack_at is None:
                    self.ack_at = now + self.config.delayed_ack
        elif seq <= reasm.nxt:
            self._ack_now = True  # duplicate

    def _take_conflicts(self) -> None:
        conflicts = self.reasm.conflicts
        if conflicts:
            for off, length in conflicts:
                self.overlap_conflicts += 1
                self.counters["tcp.overlap_conflicts"] += 1
                self._events.append(("anomaly", "overlap_conflict", wire(off), length))
            conflicts.clear()

    def _rx_fin(self, now: float) -> None:
        self.eof_received = True
        self.rcv_nxt = self.reasm.nxt + 1
        self.rcv_adv = max(self.rcv_adv, self.rcv_nxt)
        self._ack_now = True
        self._events.append(("eof",))
        st = self.state
        if st is State.ESTABLISHED:
            self.state = State.CLOSE_WAIT
        elif st is State.FIN_WAIT_1:
            self.state = State.CLOSING
        elif st is State.FIN_WAIT_2:
            self._time_wait(now)

    def _time_wait(self, now: float) -> None:
        self.state = State.TIME_WAIT
        self.tw_at = now + self.config.time_wait
        self.rtx_at = self.ack_at = self.persist_at = self.idle_at = self.ka_at = None
        if self.close_reason is None:
            self.close_reason = "fin"
            self._events.append(("closed", "fin"))

    def _finish(self, state: State, reason: str) -> None:
        self.state = state
        self.rtx_at = self.ack_at = self.persist_at = self.tw_at = None
        self.idle_at = self.ka_at = None
        if self.close_reason is None:
            self.close_reason = reason
            self._events.append(("closed", reason))

    # ---- sending -------------------------------------------------------------------------
    def _data_end(self) -> int:
        """Sequence number just past the last queued byte (where our FIN goes)."""
        return self.sbuf_start + len(self.sbuf) - self.sbuf_head

    def _tsval(self, now: float) -> int:
        return (self.ts_offset + int(now * 1000)) & MASK

    def _window(self) -> int:
        """Receive window to announce: free buffer, never shrinking, SWS-avoiding (RFC 1122)."""
        cur = max(self.rcv_adv - self.rcv_nxt, 0)
        free = min(self.config.recv_buffer, 0xFFFF << self.rcv_wscale) - self.reasm.ready_bytes
        if free <= cur:
            return cur
        if free - cur < min(self.config.recv_buffer // 2, self.mss):
            return cur
        return free

    def _sack_option(self) -> tuple[tuple[int, int], ...]:
        if not self.sack_ok or not self.reasm.ooo_chunks:
            return ()
        blocks = self.reasm.sack_blocks(3 if self.ts_ok else 4)
        return tuple((wire(a), wire(b)) for a, b in blocks)

    def _segment(
        self,
        seq: int,
        flags: int,
        now: float,
        payload: bytes = b"",
        sack: tuple[tuple[int, int], ...] | None = None,
    ) -> TcpRepr:
        win = self._window()
        if flags & SYN:
            field = min(win, 0xFFFF)
        else:
            field = min(win >> self.rcv_wscale, 0xFFFF)
        self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + (field << self.rcv_wscale))
        ts = (self._tsval(now), self.ts_recent) if self.ts_ok else None
        if sack is None:
            sack = self._sack_option()
        self._ack_now = False
        self.ack_at = None
        self._unacked_segs = 0
        self.segs_out += 1
        return TcpRepr(
            self.local_port,
            self.remote_port,
            wire(seq),
            wire(self.rcv_nxt) if flags & ACK else 0,
            flags,
            field,
            payload,
            timestamp=ts,
            sack_blocks=sack,
        )

    def _syn(self, now: float) -> TcpRepr:
        """Our SYN (active open, offering every configured option) or SYN-ACK (echoing the
        options the peer offered and we allow)."""
        passive = self.state is State.SYN_RECEIVED
        win = min(self.config.recv_buffer, 0xFFFF)
        self.segs_out += 1
        if self.rtx_at is None:
            self.rtx_at = now + self.rtt.rto
        if self.timing is None and self.retries == 0:
            self.timing = (self.iss, now)
        self.snd_nxt = self.snd_max = self.iss + 1
        if passive:
            self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + win)
            ws = self.rcv_wscale if self.ws_ok else None
            sack_ok, ts_ok = self.sack_ok, self.ts_ok
        else:
            self.ws_ok = self.config.window_scaling
            self.rcv_wscale = window_scale_for(self.config.recv_buffer) if self.ws_ok else 0
            ws = self.rcv_wscale if self.ws_ok else None
            sack_ok, ts_ok = self.config.sack, self.config.timestamps
        return TcpRepr(
            self.local_port,
            self.remote_port,
            self.iss,
            wire(self.rcv_nxt) if passive else 0,
            SYN | ACK if passive else SYN,
            win,
            mss=self.local_mss,
            wscale=ws,
            sack_permitted=sack_ok,
            timestamp=(self._tsval(now), self.ts_recent if passive else 0) if ts_ok else None,
        )

    def segments_to_send(self, now: float) -> list[TcpRepr]:
        out: list[TcpRepr] = []
        if self._urgent:
            out.extend(self._urgent)
            self.segs_out += len(self._urgent)
            self._urgent.clear()
        st = self.state
        if st is State.CLOSED or st is State.LISTEN:
            return out
        if st is State.SYN_SENT or st is State.SYN_RECEIVED:
            if self.snd_nxt == self.iss:
                out.append(self._syn(now))
            return out
        if st is State.TIME_WAIT:
            if self._ack_now:
                out.append(self._segment(self.snd_max, ACK, now))
            return out
        if self._ack_now and self.reasm.ooo_chunks and self.sack_ok:
            out.append(self._segment(self.snd_max, ACK, now))  # SACK blocks ride on bare ACKs
        if self._fast_rtx:
            self._fast_rtx = False
            seg = self._data_segment(self.snd_una, now, retransmit=True)
            if seg is not None:
                out.append(seg)
        for _ in range(1024):
            seg = self._data_segment(self.snd_nxt, now)
            if seg is None:
                break
            out.append(seg)
        if self._ack_now or (self.ack_at is not None and now >= self.ack_at):
            out.append(self._segment(self.snd_max, ACK, now))
        if (
            (self.snd_wnd == 0 or self._sws_blocked)
            and self.rtx_at is None
            and self.persist_at is None
            and self.snd_nxt < self._data_end() + self.fin_queued
        ):
            self.persist_at = now + self.rtt.rto
            self._probes = 0
        return out

    def _data_segment(self, nxt: int, now: float, retransmit: bool = False) -> TcpRepr | None:
        """The segment starting at ``nxt`` if the windows and SWS avoidance allow it; with
        ``retransmit`` only what was already sent (fast retransmit), ``snd_nxt`` untouched."""
        data_end = self._data_end()
        unsent = data_end - nxt
        sack = self._sack_option()  # SACK blocks ride on data too; the payload makes room
        room = self.mss - (12 if self.ts_ok else 0) - (4 + 8 * len(sack) if sack else 0)
        # may the FIN (sequence number data_end) go out in this segment?
        fin_allowed = self.fin_queued and (not retransmit or self.snd_max > data_end)
        if unsent > 0:
            if retransmit:
                n = min(unsent, room, self.snd_max - nxt)
                if n <= 0:
                    return None
            else:
                edge = self.snd_una + min(self.snd_wnd, self.cwnd)
                n = min(unsent, room, edge - nxt)
                if n <= 0:
                    return None
                if n < unsent and n < room and n < self.max_snd_wnd // 2:
                    if not self._sws_override:
                        self._sws_blocked = True
                        return None  # silly-window avoidance (RFC 9293 §3.8.6.2.1)
                self._sws_override = self._sws_blocked = False
            fin = fin_allowed and nxt + n == data_end
        elif unsent == 0 and fin_allowed:
            n, fin = 0, True
        else:
            return None
        start = nxt - self.sbuf_start + self.sbuf_head
        payload = bytes(self.sbuf[start : start + n]) if n else b""
        flags = ACK | (FIN if fin else 0) | (PSH if n and nxt + n == data_end else 0)
        seg = self._segment(nxt, flags, now, payload, sack)
        end = nxt + n + fin
        if nxt < self.snd_max:
            self.retransmits += 1
            self.counters["tcp.retransmits"] += 1
            if self.timing is not None and self.timing[0] >= nxt:
                self.timing = None  # Karn: no sample from a retransmitted segment
        elif self.timing is None and not self.ts_ok:
            self.timing = (nxt, now)
        if not retransmit:
            self.snd_nxt = end
        if end > self.snd_max:
            self.snd_max = end
        if self.rtx_at is None:
            self.rtx_at = now + self.rtt.rto
        return seg

    # ---- timers --------------------------------------------------------------------------
    def poll_at(self) -> float | None:
        t: float | None = None
        for x in (self.rtx_at, self.ack_at, self.persist_at, self.tw_at, self.idle_at, self.ka_at):
            if x is not None and (t is None or x < t):
                t = x
        return t

    def handle_timer(self, now: float) -> None:
        if self.tw_at is not None and now >= self.tw_at:
            self.tw_at = None
            self.state = State.CLOSED
            return
        if self.idle_at is not None and now >= self.idle_at:
            self.counters["tcp.idle_timeouts"] += 1
            self.abort("idle")
            return
        if self.rtx_at is not None and now >= self.rtx_at:
            self._on_rto(now)
        if self.persist_at is not None and now >= self.persist_at:
            self._window_probe(now)
        if self.ka_at is not None and now >= self.ka_at:
            self._keepalive(now)

    def _on_rto(self, now: float) -> None:
        self.rtx_at = None
        self.retries += 1
        self.counters["tcp.rto_timeouts"] += 1
        self.rtt.backoff()
        self.timing = None
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            if self.retries > self.config.max_syn_retries:
                self.counters["tcp.give_ups"] += 1
                self.abort("timeout")
                return
            self.snd_nxt = self.iss
            self.retransmits += 1
            self.counters["tcp.retransmits"] += 1
            return
        if self.retries > self.config.max_retries:
            self.counters["tcp.give_ups"] += 1
            self.abort("timeout")
            return
        flight = self.snd_max - self.snd_una
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self.recover = None
        self.dupacks = 0
        self.snd_nxt = self.snd_una  # go back and resend from the first unacknowledged byte

    def _window_probe(self, now: float) -> None:
        """Zero-window probe: an old sequence number the peer must answer with its window
        (as Linux does), backed off like the RTO; it never puts data past the peer's window."""
        if self.snd_wnd:  # window open but too small: the SWS override timer expired
            self.persist_at = None
            self._sws_override = True
            return
        self._probes += 1
        self.counters["tcp.window_probes"] += 1
        self.persist_at = now + min(
            self.rtt.rto * (1 << min(self._probes, 10)), self.config.rto_max
        )
        self._urgent.append(self._segment(self.snd_una - 1, ACK, now))
        self.segs_out -= 1  # counted when sent

    def _keepalive(self, now: float) -> None:
        if self.ka_sent >= self.config.keepalive_probes:
            self.counters["tcp.give_ups"] += 1
            self.abort("timeout")
            return
        self.ka_sent += 1
        self.ka_at = now + max(self.config.keepalive / 4, 1.0)
        self._urgent.append(self._segment(self.snd_una - 1, ACK, now))
        self.segs_out -= 1  # counted when sent

    # ---- inspection ----------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        return {
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "segments_in": self.segs_in,
            "segments_out": self.segs_out,
            "retransmits": self.retransmits,
            "out_of_order": self.ooo_segments,
            "overlap_conflicts": self.overlap_conflicts,
        }


__all__ = ["State", "TcpEndpoint", "window_scale_for"]
