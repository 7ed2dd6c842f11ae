"""The TCP endpoint: one connection's sans-IO state machine (RFC 9293; model: smoltcp's socket).

``receive_segment(seg, now)`` takes a parsed segment; ``segments_to_send(now)`` returns what is due;
``poll_at()``/``handle_timer(now)`` drive retransmission, delayed ACK, zero-window probes,
TIME-WAIT, idle and keep-alive. The application side is ``read()``, ``send()``, ``close()`` and
``abort()``; ``next_event()`` reports ``connected``, ``eof``, ``closed`` and ``anomaly``.

The connection's variables live in ``Tcb`` (``tcb.py``, with the sequence-number conventions);
the sending half, timers included, in ``TcpSender`` (``sender.py``); this module adds opening,
the application side and the receive path.
"""

from __future__ import annotations

import collections
from typing import Any

from pipeline.tcp.assembler import Reassembler
from pipeline.tcp.config import TcpConfig
from pipeline.tcp.segment import Segment
from pipeline.tcp.sender import TcpSender
from pipeline.tcp.seq import HALF, MASK, unwrap, wire
from pipeline.tcp.tcb import (
    CHALLENGE_ACKS_PER_SECOND,
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    DEFAULT_MSS,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    LISTEN,
    PAWS_REORDER_TICKS,
    RECV_OPEN,
    SEND_OPEN,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    State,
    window_scale_for,
)
from pipeline.wire.tcp import ACK, FIN, RST, SYN, TcpRepr


class TcpEndpoint(TcpSender):
    """One TCP connection. Build with ``accept()`` (passive), ``connect()`` or ``from_cookie()``."""

    __slots__ = ()

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def accept(
        cls,
        config: TcpConfig,
        syn: Segment,
        *,
        iss: int,
        mss: int,
        now: float,
        ts_offset: int = 0,
        counters: collections.Counter[str] | None = None,
    ) -> TcpEndpoint:
        """Passive open from a received SYN: SYN-RECEIVED with a SYN-ACK due."""
        ep = cls(
            config,
            syn.dst_port,
            syn.src_port,
            iss=iss,
            mss=mss,
            now=now,
            ts_offset=ts_offset,
            counters=counters,
        )  # spelled out: one per connection, without packing and unpacking a keyword dict
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
        ep.state = SYN_RECEIVED
        ep.counters["tcp.syn_received"] += 1
        return ep

    @classmethod
    def connect(
        cls, config: TcpConfig, local_port: int, remote_port: int, **kw: Any
    ) -> TcpEndpoint:
        """Active open: SYN-SENT with a SYN due (used by in-process peers and tests)."""
        ep = cls(config, local_port, remote_port, **kw)
        ep.state = SYN_SENT
        return ep

    @classmethod
    def from_cookie(
        cls, config: TcpConfig, ack_seg: Segment, peer_mss: int, **kw: Any
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
        self.state = FIN_WAIT_1 if self.fin_queued else ESTABLISHED
        self.cwnd = self.config.initial_window * self.mss
        self.rtt.restore()
        self._events.append(("connected",))

    # ---- application side ----------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes toward the peer (ignored once our side is closed)."""
        if self.state in SEND_OPEN or self.state in (SYN_RECEIVED, SYN_SENT):
            if not self.fin_queued:
                self.sbuf += data

    def close(self) -> None:
        """Orderly close: FIN after the queued bytes."""
        st = self.state
        if st in (SYN_SENT, LISTEN):
            self._finish(CLOSED, "aborted")
        elif st in (ESTABLISHED, SYN_RECEIVED):
            self.fin_queued = True
            if st is ESTABLISHED:
                self.state = FIN_WAIT_1
        elif st is CLOSE_WAIT:
            self.fin_queued = True
            self.state = LAST_ACK

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
    def receive_segment(self, seg: Segment, now: float) -> None:
        self.segs_in += 1
        st = self.state
        if st is CLOSED or st is LISTEN:
            return
        if st is SYN_SENT:
            self._rx_syn_sent(seg, now)
            return
        flags = seg.flags
        nxt = self.rcv_nxt
        d = (seg.seq - nxt) & MASK  # unwrap(seg.seq, nxt), inline: this runs per segment
        seq = nxt + (d - 0x100000000 if d >= HALF else d)
        payload = seg.payload
        plen = len(payload)
        ts = seg.timestamp
        if ts is not None and self.ts_ok and not flags & RST:
            behind = (self.ts_recent - ts[0]) & MASK  # seq_diff(ts_recent, TSval)
            if behind and behind < HALF:  # older than TS.Recent
                reordered = behind <= PAWS_REORDER_TICKS and (
                    seq + plen > nxt if plen else not flags & (SYN | FIN)
                )
                if not reordered:  # PAWS (RFC 7323 §5), tolerant of reordering
                    self.counters["tcp.paws_drops"] += 1
                    self._ack_now = True
                    return
        if st is SYN_RECEIVED and flags & SYN and not flags & ACK and seq == self.irs:
            self.snd_nxt = self.iss  # retransmitted SYN: send the SYN-ACK again
            return
        # the acceptance test; its commonest answer (the next expected byte, window open or
        # segment empty) first
        if not (
            seq == nxt and (not plen and not flags & (SYN | FIN) or self.rcv_adv > nxt)
        ) and not self._acceptable(seq, plen + (flags & SYN and 1) + (flags & FIN)):
            if flags & ACK and not flags & (RST | SYN) and self.rcv_adv <= self.rcv_nxt:
                # RFC 9293 §3.10.7.4: with a zero window, valid ACKs are still processed
                if st is not SYN_RECEIVED:
                    self._rx_ack(seg, seq, unwrap(seg.ack, self.snd_una), 0, now)
            if not flags & RST and self.state is not CLOSED:
                if plen and seq < self.rcv_nxt:
                    self.reasm.check_old(seq, seg.payload)
                    self._take_conflicts()
                self._ack_now = True
                if st is TIME_WAIT and flags & FIN:
                    self.tw_at = now + self.config.time_wait
            return
        if st is not TIME_WAIT:
            cfg = self.config
            self.idle_at = now + cfg.idle_timeout
            if cfg.keepalive:
                self.ka_at, self.ka_sent = now + cfg.keepalive, 0
        if flags & RST:
            self._rx_rst(seq, now)
            return
        if flags & SYN:  # RFC 5961 §4: any SYN in a synchronized state gets a challenge ACK
            self._challenge(now)
            return
        if not flags & ACK:
            return
        una = self.snd_una
        d = (seg.ack - una) & MASK  # unwrap(seg.ack, una)
        ack = una + (d - 0x100000000 if d >= HALF else d)
        if st is SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_max:
                self._urgent.append(TcpRepr(self.local_port, self.remote_port, seg.ack, 0, RST, 0))
                return
            self._established()
            st = ESTABLISHED
        if not self._rx_ack(seg, seq, ack, plen, now):
            return
        st = self.state
        if st is CLOSED:
            return
        if ts is not None and self.ts_ok and seq <= self.rcv_nxt:
            ahead = (ts[0] - self.ts_recent) & MASK  # seq_diff(TSval, ts_recent) > 0
            if ahead and ahead < HALF:
                self.ts_recent = ts[0]
        if plen and st in RECV_OPEN:
            self._rx_data(seq, payload, now)
        if flags & FIN and st not in (CLOSE_WAIT, LAST_ACK, CLOSING):
            fin_at = seq + plen
            if fin_at <= self.rcv_adv or fin_at == self.rcv_nxt:
                self.fin_rcv = fin_at
            if st is TIME_WAIT:
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

    def _rx_rst(self, seq: int, now: float) -> None:
        if seq == self.rcv_nxt:
            self._finish(CLOSED, "rst_received")
        else:  # RFC 5961 §3.2: in window but not exact
            self._challenge(now)

    def _challenge(self, now: float) -> None:
        """A challenge ACK (RFC 5961), at most CHALLENGE_ACKS_PER_SECOND per flow (§7)."""
        second = int(now)
        if second != self._challenge_second:
            self._challenge_second, self._challenges = second, 0
        if self._challenges >= CHALLENGE_ACKS_PER_SECOND:
            self.counters["tcp.challenge_acks_suppressed"] += 1
            return
        self._challenges += 1
        self.counters["tcp.challenge_acks"] += 1
        self._ack_now = True

    def _rx_syn_sent(self, seg: Segment, now: float) -> None:
        flags = seg.flags
        ack = unwrap(seg.ack, self.snd_una)
        if flags & ACK and not self.iss < ack <= self.snd_max:
            if not flags & RST:
                self._urgent.append(TcpRepr(self.local_port, self.remote_port, seg.ack, 0, RST, 0))
            return
        if flags & RST:
            if flags & ACK:
                self._finish(CLOSED, "rst_received")
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

    def _rx_ack(self, seg: Segment, seq: int, ack: int, plen: int, now: float) -> bool:
        """ACK processing; False when the segment must be dropped."""
        if ack > self.snd_max:
            self._ack_now = True  # acknowledges something not yet sent
            return False
        if ack < self.snd_una and ack < self.snd_una - max(self.max_snd_wnd, 1):
            self._challenge(now)  # RFC 5961 §5.2: too old
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
        if seg.sack_blocks and self.sack_ok and flight > 0:
            self._sack_update(seg, ack)
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            self.snd_wnd = window
            self.snd_wl1, self.snd_wl2 = seq, ack
            if window > self.max_snd_wnd:
                self.max_snd_wnd = window
        if self.snd_wnd and self.persist_at is not None:
            self.persist_at = None
        if self.fin_queued and ack == self._data_end() + 1:
            st = self.state
            if st is FIN_WAIT_1:
                self.state = FIN_WAIT_2
            elif st is CLOSING:
                self._time_wait(now)
            elif st is LAST_ACK:
                self._finish(CLOSED, "fin")
                return False
        return True

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
        if st is ESTABLISHED:
            self.state = CLOSE_WAIT
        elif st is FIN_WAIT_1:
            self.state = CLOSING
        elif st is FIN_WAIT_2:
            self._time_wait(now)

    def _time_wait(self, now: float) -> None:
        self.state = TIME_WAIT
        self.tw_at = now + self.config.time_wait
        self.rtx_at = self.ack_at = self.persist_at = self.idle_at = self.ka_at = None
        self.tlp_at = None
        if self.close_reason is None:
            self.close_reason = "fin"
            self._events.append(("closed", "fin"))


__all__ = ["State", "TcpEndpoint", "window_scale_for"]
