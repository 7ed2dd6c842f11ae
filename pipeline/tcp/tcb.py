"""The transmission control block: one connection's shared state (RFC 9293 §3.3.1).

``TcpEndpoint`` is built in layers over it: ``Tcb`` (variables, states, closing), ``TcpSender``
(``sender.py``: segments out, ACK processing, retransmission, congestion, timers) and
``TcpEndpoint`` (``endpoint.py``: opening, the application side and the receive path).

Sequence variables (``snd_*``, ``rcv_*``, ``iss``, ``irs``) are *unwrapped* ints: they start at
their 32-bit ISN and keep growing. Wire values are ``wire(x)``; incoming numbers are ``unwrap``-ed
next to the variable they are compared with (``seq.py``), so wrap-around is handled at the edge.
"""

from __future__ import annotations

import collections
import functools
from collections import deque
from enum import Enum
from typing import Any

from pipeline.tcp.assembler import Reassembler
from pipeline.tcp.config import TcpConfig
from pipeline.tcp.rtt import RttEstimator
from pipeline.tcp.seq import MASK, wire
from pipeline.wire.tcp import RST, TcpRepr

DEFAULT_MSS = 536  # RFC 9293 §3.7.1: assumed when the peer sends no MSS option
MAX_CWND = 1 << 30
CHALLENGE_ACKS_PER_SECOND = 10  # RFC 5961 §7: bound what a blind attacker can make us send
# A segment whose TSval is older than TS.Recent by at most this many peer clock ticks and which
# is a pure ACK or carries new in-window data is a reordered segment, not a wrapped old
# duplicate: PAWS lets it through (strict PAWS turned every 2 ms of reordering after a
# retransmission into a loss, and threw away the ACKs and SACK blocks recovery needs).
PAWS_REORDER_TICKS = 1000


# The reassembler of a connection that has not synchronized yet: always empty, never added to
# (``_init_receive`` gives each connection its own), so one instance serves them all.
NOTHING_RECEIVED = Reassembler(0, 0, 0, 0)


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


# The states as plain module names: ``State.X`` goes through the enum class on every use
# (~70 ns in CPython 3.11) and the receive path tests the state many times per segment.
CLOSED = State.CLOSED
LISTEN = State.LISTEN
SYN_SENT = State.SYN_SENT
SYN_RECEIVED = State.SYN_RECEIVED
ESTABLISHED = State.ESTABLISHED
FIN_WAIT_1 = State.FIN_WAIT_1
FIN_WAIT_2 = State.FIN_WAIT_2
CLOSE_WAIT = State.CLOSE_WAIT
CLOSING = State.CLOSING
LAST_ACK = State.LAST_ACK
TIME_WAIT = State.TIME_WAIT

# States in which we may still send new data / in which the peer may still send data (tuples:
# membership is by identity, where a set would hash the member in Python).
SEND_OPEN = (ESTABLISHED, CLOSE_WAIT)
RECV_OPEN = (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2)


@functools.lru_cache(maxsize=8)  # one buffer size per configuration; asked per passive open
def window_scale_for(buffer: int) -> int:
    ws = 0
    while (buffer >> ws) > 0xFFFF and ws < 14:
        ws += 1
    return ws


class Tcb:
    """The variables every layer of the endpoint shares, and the ways a connection ends."""

    # Slots, not an instance dict: ~70 variables are more than CPython 3.11 shares dict keys
    # for (30), so each connection built and grew a dict of its own and every attribute read
    # went through it; the subclasses add none.
    __slots__ = (
        "config",
        "local_port",
        "remote_port",
        "counters",
        "state",
        "created",
        "local_mss",
        "ts_offset",
        "iss",
        "snd_una",
        "snd_nxt",
        "snd_max",
        "snd_wnd",
        "max_snd_wnd",
        "snd_wl1",
        "snd_wl2",
        "snd_wscale",
        "mss",
        "gso_max",
        "sbuf",
        "sbuf_head",
        "sbuf_start",
        "fin_queued",
        "irs",
        "rcv_nxt",
        "rcv_adv",
        "rcv_wscale",
        "reasm",
        "fin_rcv",
        "eof_received",
        "sack_ok",
        "ts_ok",
        "ts_recent",
        "rtt",
        "rtx_at",
        "tlp_at",
        "_tlp",
        "ack_at",
        "persist_at",
        "tw_at",
        "idle_at",
        "ka_at",
        "ka_sent",
        "retries",
        "timing",
        "cwnd",
        "ssthresh",
        "dupacks",
        "recover",
        "_fast_rtx",
        "sacked",
        "rtx_high",
        "_probes",
        "_sws_blocked",
        "_sws_override",
        "_ack_now",
        "_challenges",
        "_challenge_second",
        "_unacked_segs",
        "_urgent",
        "ws_ok",
        "_events",
        "close_reason",
        "bytes_in",
        "bytes_out",
        "segs_in",
        "segs_out",
        "retransmits",
        "ooo_segments",
        "overlap_conflicts",
    )

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
        self.state = CLOSED
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
        # new data may go out in segments of up to this many payload bytes (whole MSS
        # multiples) that the kernel segments (TAP offload); 0: never more than one MSS
        self.gso_max = 0
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
        self.reasm = NOTHING_RECEIVED  # replaced by the opening (``_init_receive``)
        self.fin_rcv: int | None = None  # sequence number of the peer's FIN once seen
        self.eof_received = False
        # options
        self.sack_ok = False
        self.ts_ok = False
        self.ts_recent = 0
        # timers and retransmission
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.rtx_at: float | None = None
        self.tlp_at: float | None = None  # tail loss probe (RFC 8985 §7)
        self._tlp = False
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
        # SACK scoreboard (RFC 6675): [lo, hi) ranges above snd_una the peer holds, sorted
        self.sacked: list[list[int]] = []
        self.rtx_high = 0  # retransmissions in this recovery episode reached here
        self._probes = 0
        self._sws_blocked = False
        self._sws_override = False
        self._ack_now = False
        self._challenges = 0
        self._challenge_second = -1
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

    def abort(self, reason: str = "aborted") -> None:
        """Send RST now and close."""
        if self.state in (CLOSED, TIME_WAIT, LISTEN):
            return
        if self.state is not SYN_SENT:
            self._urgent.append(
                TcpRepr(self.local_port, self.remote_port, wire(self.snd_max), 0, RST, 0)
            )
        self._finish(CLOSED, reason)

    def _finish(self, state: State, reason: str) -> None:
        self.state = state
        self.rtx_at = self.ack_at = self.persist_at = self.tw_at = self.tlp_at = None
        self.idle_at = self.ka_at = None
        if self.close_reason is None:
            self.close_reason = reason
            self._events.append(("closed", reason))

    def _data_end(self) -> int:
        """Sequence number just past the last queued byte (where our FIN goes)."""
        return self.sbuf_start + len(self.sbuf) - self.sbuf_head

    def _tsval(self, now: float) -> int:
        return (self.ts_offset + int(now * 1000)) & MASK


__all__ = [
    "CLOSED",
    "CLOSE_WAIT",
    "CLOSING",
    "ESTABLISHED",
    "FIN_WAIT_1",
    "FIN_WAIT_2",
    "LAST_ACK",
    "LISTEN",
    "RECV_OPEN",
    "SEND_OPEN",
    "SYN_RECEIVED",
    "SYN_SENT",
    "State",
    "TIME_WAIT",
    "Tcb",
    "window_scale_for",
]
