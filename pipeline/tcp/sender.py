"""The sending half of the endpoint: segments out, ACKs in, retransmission and timers.

RFC 6298 RTO with backoff and a give-up limit, fast retransmit on three duplicate ACKs or on SACK
blocks showing data above a hole (RFC 6675 style), NewReno partial ACKs (RFC 6582), slow start and
congestion avoidance (RFC 5681), the peer's window, zero-window probes, silly-window avoidance
with an override timer, delayed ACKs and keep-alive.
"""

from __future__ import annotations

from pipeline.tcp.segment import Segment, tx_segment
from pipeline.tcp.seq import MASK, unwrap, wire
from pipeline.tcp.tcb import (
    CLOSED,
    LISTEN,
    MAX_CWND,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    Tcb,
    window_scale_for,
)
from pipeline.wire.tcp import ACK, FIN, PSH, SYN, TcpRepr

MAX_SACK_RANGES = 64  # scoreboard bound: a peer cannot make us keep more


class TcpSender(Tcb):
    __slots__ = ()

    def _new_ack(self, ack: int, now: float, seg: Segment) -> None:
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
        board = self.sacked
        if board:
            while board and board[0][1] <= ack:
                del board[0]
            if board and board[0][0] < ack:
                board[0][0] = ack
        ts = seg.timestamp
        if ts is not None and self.ts_ok and ts[1]:
            r = ((self._tsval(now) - ts[1]) & MASK) / 1000.0
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
        if self.snd_una >= self.snd_max:
            self.rtx_at = self.tlp_at = None
        else:
            self.rtx_at = now + self.rtt.rto
            self._arm_tlp(now)

    def _sack_update(self, seg: Segment, ack: int) -> None:
        """Merge the peer's SACK blocks into the scoreboard, then detect loss RFC 6675 style:
        more than two segments' worth SACKed above ``snd_una`` means the first hole is lost,
        whether or not the ACKs carried data. In recovery, each SACK lets more holes go."""
        board = self.sacked
        una, top = self.snd_una, self.snd_max
        for left, right in seg.sack_blocks:
            lo = max(unwrap(left, ack), una)
            hi = min(unwrap(right, ack), top)
            if hi <= lo:
                continue
            merged = [lo, hi]
            keep = []
            for r in board:
                if r[1] < merged[0] or r[0] > merged[1]:
                    keep.append(r)
                else:
                    merged = [min(r[0], merged[0]), max(r[1], merged[1])]
            keep.append(merged)
            keep.sort()
            board[:] = keep[-MAX_SACK_RANGES:]
        if not board:
            return
        if self.recover is None:
            if sum(hi - lo for lo, hi in board) > 2 * self.mss:
                self._enter_recovery()
        else:
            self._fast_rtx = True

    def _next_hole(self) -> tuple[int, int] | None:
        """(start, length) of the next unSACKed range below the highest SACKed byte that has
        not been retransmitted in this recovery episode."""
        start = max(self.rtx_high, self.snd_una)
        for lo, hi in self.sacked:
            if start < lo:
                return start, lo - start
            if start < hi:
                start = hi
        return None

    def _enter_recovery(self) -> None:
        self.counters["tcp.fast_retransmits"] += 1
        flight = self.snd_max - self.snd_una
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss
        self.recover = self.snd_max
        self.rtx_high = self.snd_una
        self._fast_rtx = True

    def _dup_ack(self) -> None:
        self.dupacks += 1
        if self.recover is not None:
            self.cwnd += self.mss
        elif self.dupacks == 3:
            self._enter_recovery()

    def _window(self) -> int:
        """Receive window to announce: free buffer, never shrinking, SWS-avoiding (RFC 1122)."""
        cur = self.rcv_adv - self.rcv_nxt
        if cur < 0:
            cur = 0
        buf = self.config.recv_buffer
        cap = 0xFFFF << self.rcv_wscale
        free = (buf if buf < cap else cap) - self.reasm.ready_bytes
        if free <= cur:
            return cur
        if free - cur < min(buf // 2, self.mss):
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
            sack = self._sack_option() if self.sack_ok else ()
        self._ack_now = False
        self.ack_at = None
        self._unacked_segs = 0
        self.segs_out += 1
        return tx_segment(
            self.local_port,
            self.remote_port,
            seq & MASK,
            self.rcv_nxt & MASK if flags & ACK else 0,
            flags,
            field,
            payload,
            ts,
            sack,
        )

    def _syn(self, now: float) -> TcpRepr:
        """Our SYN (active open, offering every configured option) or SYN-ACK (echoing the
        options the peer offered and we allow)."""
        passive = self.state is SYN_RECEIVED
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
        return tx_segment(
            self.local_port,
            self.remote_port,
            self.iss,
            wire(self.rcv_nxt) if passive else 0,
            SYN | ACK if passive else SYN,
            win,
            b"",
            (self._tsval(now), self.ts_recent if passive else 0) if ts_ok else None,
            (),
            self.local_mss,
            ws,
            sack_ok,
        )

    def segments_to_send(self, now: float) -> list[TcpRepr]:
        if (
            not (self._urgent or self._ack_now or self._fast_rtx or self._tlp)
            and self.snd_nxt >= self._data_end() + self.fin_queued
            and (self.ack_at is None or now < self.ack_at)
        ):
            return []  # nothing due: the commonest answer, decided before any other
        out: list[TcpRepr] = []
        if self._urgent:
            out.extend(self._urgent)
            self.segs_out += len(self._urgent)
            self._urgent.clear()
        st = self.state
        if st is CLOSED or st is LISTEN:
            return out
        if st is SYN_SENT or st is SYN_RECEIVED:
            if self.snd_nxt == self.iss:
                out.append(self._syn(now))
            return out
        if st is TIME_WAIT:
            if self._ack_now:
                out.append(self._segment(self.snd_max, ACK, now))
            return out
        if self._ack_now and self.reasm.ooo_chunks and self.sack_ok:
            out.append(self._segment(self.snd_max, ACK, now))  # SACK blocks ride on bare ACKs
        if self._fast_rtx:
            self._fast_rtx = False
            if self.sacked:  # SACK recovery: the next holes, a couple per ACK
                for _ in range(2):
                    hole = self._next_hole()
                    if hole is None:
                        break
                    seg = self._data_segment(hole[0], now, retransmit=True, limit=hole[1])
                    if seg is None:
                        break
                    self.rtx_high = hole[0] + max(len(seg.payload), 1)
                    out.append(seg)
            else:
                seg = self._data_segment(self.snd_una, now, retransmit=True)
                if seg is not None:
                    out.append(seg)
        if self._tlp:
            seg = self._tail_probe(now)
            if seg is not None:
                out.append(seg)
        end = self._data_end() + self.fin_queued  # past our last byte, or our FIN
        if self.snd_nxt < end:  # new data or our FIN
            for _ in range(1024):
                seg = self._data_segment(self.snd_nxt, now)
                if seg is None:
                    break
                out.append(seg)
                if self.snd_nxt >= end:  # all sent: no call to learn that nothing is left
                    break
        if self._ack_now or (self.ack_at is not None and now >= self.ack_at):
            out.append(self._segment(self.snd_max, ACK, now))
        if (
            (self.snd_wnd == 0 or self._sws_blocked)
            and self.rtx_at is None
            and self.persist_at is None
            and self.snd_nxt < end
        ):
            self.persist_at = now + self.rtt.rto
            self._probes = 0
        return out

    def _data_segment(
        self, nxt: int, now: float, retransmit: bool = False, limit: int = 1 << 30
    ) -> TcpRepr | None:
        """The segment starting at ``nxt`` if the windows and SWS avoidance allow it; with
        ``retransmit`` only what was already sent (fast retransmit), ``snd_nxt`` untouched."""
        data_end = self._data_end()
        unsent = data_end - nxt
        # may the FIN (sequence number data_end) go out in this segment?
        fin_allowed = self.fin_queued and (not retransmit or self.snd_max > data_end)
        if unsent < 0 or (unsent == 0 and not fin_allowed):
            return None  # the common "nothing more to send" answer, kept cheap
        # SACK blocks ride on data too; the payload makes room
        sack = self._sack_option() if self.sack_ok else ()
        room = self.mss - (12 if self.ts_ok else 0) - (4 + 8 * len(sack) if sack else 0)
        if unsent > 0:
            if retransmit:
                n = min(unsent, room, self.snd_max - nxt, limit)
                if n <= 0:
                    return None
            else:
                # the peer's right edge is relative to the ACK that carried the window
                edge = min(self.snd_wl2 + self.snd_wnd, self.snd_una + self.cwnd)
                cap = room
                if self.gso_max and not sack and self.gso_max > 2 * room:
                    cap = self.gso_max // room * room  # whole wire segments, cut by the kernel
                n = min(unsent, cap, edge - nxt)
                if n > room and n < unsent:
                    n -= n % room  # whole segments; the tail waits, as it would without offload
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
            self._arm_tlp(now)
        if self.rtx_at is None:
            self.rtx_at = now + self.rtt.rto
        return seg

    def _arm_tlp(self, now: float) -> None:
        """Tail loss probe (RFC 8985 §7): if nothing is acknowledged within ~2 RTT, resend the
        last segment so a lost tail is repaired by SACK/fast recovery instead of an RTO."""
        srtt = self.rtt.srtt
        if srtt is None or self.recover is not None:
            return
        pto = 2 * srtt + (self.config.delayed_ack if self.snd_max - self.snd_una <= self.mss else 0)
        self.tlp_at = now + max(pto, 0.002)

    def _tail_probe(self, now: float) -> TcpRepr | None:
        self._tlp = False
        if self.snd_una >= self.snd_max or self.recover is not None:
            return None
        room = self.mss - (12 if self.ts_ok else 0)
        start = max(self.snd_una, min(self.snd_max, self._data_end()) - room)
        seg = self._data_segment(start, now, retransmit=True)
        if seg is not None:
            self.counters["tcp.tail_loss_probes"] += 1
        return seg

    def poll_at(self) -> float | None:
        t = self.idle_at  # the earliest of the timers, spelled out (called after every segment)
        x = self.rtx_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.ack_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.tlp_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.persist_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.tw_at
        if x is not None and (t is None or x < t):
            t = x
        x = self.ka_at
        if x is not None and (t is None or x < t):
            t = x
        return t

    def handle_timer(self, now: float) -> None:
        if self.tw_at is not None and now >= self.tw_at:
            self.tw_at = None
            self.state = CLOSED
            return
        if self.idle_at is not None and now >= self.idle_at:
            self.counters["tcp.idle_timeouts"] += 1
            self.abort("idle")
            return
        if self.rtx_at is not None and now >= self.rtx_at:
            self._on_rto(now)
        elif self.tlp_at is not None and now >= self.tlp_at:
            self.tlp_at = None
            self._tlp = True
        if self.persist_at is not None and now >= self.persist_at:
            self._window_probe(now)
        if self.ka_at is not None and now >= self.ka_at:
            self._keepalive(now)

    def _on_rto(self, now: float) -> None:
        self.rtx_at = self.tlp_at = None
        self.retries += 1
        self.counters["tcp.rto_timeouts"] += 1
        self.rtt.backoff()
        self.timing = None
        if self.state in (SYN_SENT, SYN_RECEIVED):
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
        self.sacked.clear()  # the receiver may renege (RFC 2018 §8): start from scratch

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


__all__ = ["TcpSender"]
