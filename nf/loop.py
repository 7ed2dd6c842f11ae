"""The I/O loop: one thread, one ``select.poll`` over the frame port's fd, the ZeroMQ sockets
(through their ``ZMQ_FD``), the backends' sockets and a signal wake-up pipe, with timers from the
components' ``poll_at()`` (asked at most once per wake, and not on wakes that cannot have moved a
deadline: see ``Loop.run``). Never busy-waits: it sleeps in ``poll`` until a frame, a request or
the earliest deadline."""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable
from typing import Any

import zmq

from nf.runtime import Runtime

FRAMES_PER_WAKE = 64  # frames read per readiness before serving timers/control again
MAX_SLEEP = 1.0  # seconds; bounds the wait even with no timer (cheap: one wake-up a second)
_OS_IN, _OS_OUT = select.POLLIN, select.POLLOUT


class FdPoller:
    """``select.poll`` behind the part of ``zmq.Poller`` the backends use: ``register(fd, mask)``
    (mask 0 unregisters) and ``unregister(fd)`` (KeyError if unknown) with ZeroMQ's masks.

    Plain descriptors only. ``zmq_poll`` costs about 1 µs more per wake than ``poll(2)`` (it asks
    every ZeroMQ socket for its state before and after sleeping); the loop instead watches a
    ZeroMQ socket's ``ZMQ_FD``, which only says "look", and reads ``ZMQ_EVENTS`` when it fires
    (or when the socket was left readable).
    """

    def __init__(self) -> None:
        self.os_poll = select.poll()

    def register(self, fd: int, mask: int = zmq.POLLIN | zmq.POLLOUT) -> None:
        if not mask:
            try:
                self.os_poll.unregister(fd)
            except KeyError:
                pass
            return
        os_mask = (_OS_IN if mask & zmq.POLLIN else 0) | (_OS_OUT if mask & zmq.POLLOUT else 0)
        self.os_poll.register(fd, os_mask)  # again: the new mask replaces the old

    def unregister(self, fd: int) -> None:
        self.os_poll.unregister(fd)


def zmq_events(events: list[tuple[int, int]]) -> dict[int, int]:
    """``poll(2)`` results as ``zmq.Poller`` reports a plain fd: anything but in/out is POLLERR."""
    ready = {}
    for fd, ev in events:
        m = zmq.POLLERR if ev & ~(_OS_IN | _OS_OUT) else 0
        if ev & _OS_IN:
            m |= zmq.POLLIN
        if ev & _OS_OUT:
            m |= zmq.POLLOUT
        ready[fd] = m
    return ready


class Loop:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGINT/SIGTERM stop the loop; the wake-up fd makes ``poll`` return at once."""
        old_int = signal.signal(signal.SIGINT, self.stop)
        old_term = signal.signal(signal.SIGTERM, self.stop)
        old_fd = signal.set_wakeup_fd(self._wake_w)

        def restore() -> None:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
            signal.set_wakeup_fd(old_fd)

        return restore

    def flush(self, now: float) -> None:
        rt = self.rt
        for frame in rt.host.frames_to_send(now):
            rt.port.write_frame(frame)

    def run(self, max_iterations: int | None = None) -> None:
        """Serve until stopped.

        The next deadline is asked of the components (``Runtime.poll_at``) once per wake at
        most, and only when something that can move it earlier ran: a wake that only carried
        frames the host stack answered by itself (ICMP/ICMPv6 echo, ARP, ND) or TCP segments that
        armed no timer earlier than TCP's last answer keeps the deadline it had
        (``host.timers_dirty`` stays False; TCP raises it through ``TcpStack.timers_moved``, read
        when ``frames_to_send`` takes TCP's output, so it triggers the second ask below). Anything
        else (a packet stage, a ZeroMQ request, a backend socket, a signal, a timeout, fired
        timers) asks again, and so does a wake more than ``MAX_SLEEP`` after the last ask
        (wall-clock deadlines are converted when asked).
        A stale deadline can only be early (a spurious wake, never a late timer) as long as every
        component that can move a deadline earlier does so on one of those wakes: a new one
        arming timers from echo/ARP/ND handling must set ``host.timers_dirty``. A wake that only
        carried frames asks with ``full=False``: the TLS profiles' wall-clock housekeeping is then
        re-asked at most every ``TLS_REFRESH`` (see ``Runtime.poll_at`` for why that is enough).
        """
        rt = self.rt
        tap_fd = rt.port.fileno()
        if tap_fd is None:
            self.replay()
            return
        poller = FdPoller()
        poller.register(tap_fd, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        # (ZeroMQ socket, component with process(now)). The exporter's XPUB first: its
        # subscription notices decide which events the frames of the same wake publish.
        sockets: list[tuple[Any, Any]] = []
        exporter = rt.exporter
        for component in (exporter, rt.control, rt.subscriber):
            if component is not None:
                poller.register(component.socket.getsockopt(zmq.FD), zmq.POLLIN)
                sockets.append((component.socket, component))
        zmq_left = bool(sockets)  # a socket may hold messages from before: look on the first wake
        backends = rt.backends
        if backends is not None:  # forward's backend sockets, registered as they come and go
            backends.attach(poller)
        clock = rt.clocks.monotonic
        host = rt.host
        read_frames, receive = rt.port.read_frames, host.receive_frame
        frames_to_send, write_frame = host.frames_to_send, rt.port.write_frame
        poll, wake_r = poller.os_poll.poll, self._wake_r
        now = clock()
        for frame in host.startup_frames(now):
            write_frame(frame)
        host.timers_dirty = False
        deadline = rt.poll_at(now)
        asked = now
        iterations = 0
        while not self.stopping:
            if max_iterations is not None:
                iterations += 1
                if iterations > max_iterations:
                    break
            if zmq_left:
                timeout = 0.0
            elif deadline is None:
                timeout = MAX_SLEEP
            else:
                timeout = min(MAX_SLEEP, max(0.0, deadline - now))
            if exporter is not None and (flush_at := exporter.flush_at()) is not None:
                # held events: not late (the clock read now: a long wake must not add its length)
                timeout = min(timeout, max(0.0, flush_at - clock()))
            events = poll(int(timeout * 1000 + 0.999))
            now = clock()
            if len(events) == 1 and events[0][0] == tap_fd and not zmq_left:  # frames only
                stale = False
                for frame in read_frames(FRAMES_PER_WAKE):
                    receive(frame, now)
            else:
                stale = True
                ready = dict(events)
                zmq_left = False
                for sock, component in sockets:
                    # ZMQ_FD only says "look"; ZMQ_EVENTS says whether a message waits. Asked
                    # again after serving: what is left over, or arrived while the replies went
                    # out, may not make the fd readable again.
                    if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        component.process(now)
                        if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                            zmq_left = True
                if tap_fd in ready:
                    for frame in read_frames(FRAMES_PER_WAKE):
                        receive(frame, now)
                if wake_r in ready:
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
            if backends is not None and backends.conns:
                backends.service(zmq_events(events), now)
                stale = True
            if stale or host.timers_dirty or now - asked >= MAX_SLEEP:
                host.timers_dirty = False
                deadline = rt.poll_at(now, full=stale)
                asked = now
            fired = deadline is not None and deadline <= now
            if fired:
                rt.handle_timers(now)
            for frame in frames_to_send(now):  # self.flush(now), without the lookups
                write_frame(frame)
            if fired or host.timers_dirty:  # timers ran, or output queued behind a neighbour probe
                host.timers_dirty = False
                deadline = rt.poll_at(now, full=fired)
                asked = now
            if exporter is not None:  # held events due; a send may have eaten ZMQ_FD's edge
                exporter.after_wake(now)

    def replay(self) -> None:
        """A port with no fd (pcap replay, memory) is drained once.

        A capture's own timestamps keep their spacing but are moved onto the monotonic clock
        every component expects (``now``), starting at the replay's start.
        """
        rt = self.rt
        start = now = rt.clocks.monotonic()
        first_ts: float | None = None
        exporter = rt.exporter
        while not self.stopping:
            batch = rt.port.read_frames(FRAMES_PER_WAKE)
            if not batch:
                break
            if exporter is not None:  # collectors that subscribed meanwhile
                exporter.process(now)
            for item in batch:
                if isinstance(item, tuple):
                    ts, frame = item
                    if first_ts is None:
                        first_ts = ts
                    now = start + max(0.0, ts - first_ts)
                else:
                    frame = item
                rt.host.receive_frame(frame, now)
                if (deadline := rt.poll_at(now)) is not None and deadline <= now:
                    rt.handle_timers(now)
                self.flush(now)
            if exporter is not None:
                exporter.flush()

    def close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
