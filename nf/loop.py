"""The I/O loop: one thread, a ``zmq.Poller`` over the frame port's fd, the ZeroMQ sockets and a
signal wake-up pipe, with timers from the components' ``poll_at()``. Never busy-waits: it sleeps
in ``poll`` until a frame, a request or the earliest deadline."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import zmq

from nf.runtime import Runtime

FRAMES_PER_WAKE = 64  # frames read per readiness before serving timers/control again
MAX_SLEEP = 1.0  # seconds; bounds the wait even with no timer (cheap: one wake-up a second)


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
        rt = self.rt
        poller = zmq.Poller()
        tap_fd = rt.port.fileno()
        if tap_fd is None:
            self.replay()
            return
        if tap_fd is not None:
            poller.register(tap_fd, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        sockets: dict[Any, Any] = {}
        for component in (rt.control, rt.subscriber):
            if component is not None:
                poller.register(component.socket, zmq.POLLIN)
                sockets[component.socket] = component
        backends = rt.backends
        if backends is not None:  # forward's backend sockets, registered as they come and go
            backends.attach(poller)
        clock = rt.clocks.monotonic
        now = clock()
        for frame in rt.host.startup_frames(now):
            rt.port.write_frame(frame)
        iterations = 0
        while not self.stopping:
            if max_iterations is not None:
                iterations += 1
                if iterations > max_iterations:
                    break
            deadline = rt.poll_at(now)
            timeout = MAX_SLEEP if deadline is None else min(MAX_SLEEP, max(0.0, deadline - now))
            ready = dict(poller.poll(int(timeout * 1000 + 0.999)))
            now = clock()
            if tap_fd is not None and tap_fd in ready:
                for frame in rt.port.read_frames(FRAMES_PER_WAKE):
                    rt.host.receive_frame(frame, now)
            for sock, component in sockets.items():
                if sock in ready:
                    component.process(now)
            if backends is not None and backends.conns:
                backends.service(ready, now)
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 512)
                except BlockingIOError:
                    pass
            deadline = rt.poll_at(now)
            if deadline is not None and deadline <= now:
                rt.handle_timers(now)
            self.flush(now)

    def replay(self) -> None:
        """A port with no fd (pcap replay, memory) is drained once.

        A capture's own timestamps keep their spacing but are moved onto the monotonic clock
        every component expects (``now``), starting at the replay's start.
        """
        rt = self.rt
        start = now = rt.clocks.monotonic()
        first_ts: float | None = None
        while not self.stopping:
            batch = rt.port.read_frames(FRAMES_PER_WAKE)
            if not batch:
                break
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

    def close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
