"""Backend connections for stream stages: non-blocking kernel sockets serviced by the loop.

Plugins are sans-IO; a stage that relays to a backend (``forward``) asks the runtime's
:class:`KernelConnector` (``env.shared["connector"]``, the ``BackendConnector`` protocol of
``pipeline.chain``) for a connection and is told what happens through its ``BackendHandler``.
The loop registers the sockets in its poller (``attach``: ``nf.loop.FdPoller``,
``register``/``unregister`` with ZeroMQ's masks, as ``zmq.Poller`` takes them), hands the
readiness it got to ``service(ready, now)`` (fd -> ZeroMQ mask) and fires ``handle_timer(now)`` at
``poll_at()`` (connect timeouts, close lingering, errors deferred out of ``connect``). Every socket
is non-blocking; nothing here waits. Bounds: ``max_conns`` connections, ``max_buffer`` bytes
buffered toward one backend, ``READS_PER_WAKE`` reads per readiness; each refusal is counted in
``counters``.
"""

from __future__ import annotations

import collections
import errno
import heapq
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import zmq

from pipeline.chain import BackendHandler

CHUNK = 64 * 1024
READS_PER_WAKE = 4  # reads of CHUNK per readiness (bounds the bytes one wake hands a stage)
CLOSE_LINGER = 30.0  # seconds a closed connection may wait for the backend's FIN before an RST

CONNECTING, OPEN, DONE = "connecting", "open", "done"
LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def _reason(err: int) -> str:
    if err == errno.ECONNREFUSED:
        return "backend_refused"
    if err in (errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "backend_unreachable" if err != errno.ETIMEDOUT else "backend_timeout"
    if err in (errno.ECONNRESET, errno.EPIPE):
        return "backend_reset"
    return "backend_error"


class KernelBackend:
    """One backend connection (the ``BackendConn`` protocol)."""

    def __init__(
        self, connector: KernelConnector, sock: socket.socket | None, handler: BackendHandler
    ) -> None:
        self.connector = connector
        self.sock = sock
        self.fd = sock.fileno() if sock is not None else -1
        self.handler = handler
        self.state = CONNECTING
        self.out = bytearray()
        self.read_paused = False
        self.eof_received = False
        self.close_requested = False
        self.write_shut = False
        self.deadline: float | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    # ---- BackendConn -----------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        return len(self.out)

    def send(self, data: bytes) -> None:
        if self.state is DONE or self.close_requested or not data:
            return
        if len(self.out) + len(data) > self.connector.max_buffer:
            self.connector.counters["backend.buffer_overflows"] += 1
            self.connector._fail(self, "backend_buffer_overflow", deferred=True)
            return
        self.out += data
        if self.state is OPEN:
            self.connector._write(self)
            self.connector._update(self)

    def close(self) -> None:
        if self.state is DONE or self.close_requested:
            return
        self.close_requested = True
        self.deadline = None
        if self.state is OPEN:
            self.connector._write(self)
        self.connector._arm_linger(self)
        self.connector._update(self)

    def abort(self) -> None:
        if self.state is not DONE:
            self.connector.counters["backend.aborted"] += 1
            self.connector._finish(self, rst=True)

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.connector._update(self)

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.connector._update(self)

    # ---- for the connector -----------------------------------------------------------------
    def mask(self) -> int:
        if self.state is CONNECTING:
            return zmq.POLLOUT
        if self.state is not OPEN:
            return 0
        m = 0
        if not self.read_paused and not self.eof_received:
            m |= zmq.POLLIN
        if self.out or (self.close_requested and not self.write_shut):
            m |= zmq.POLLOUT
        return m


class KernelConnector:
    """Opens and services backend sockets (the ``BackendConnector`` protocol)."""

    def __init__(
        self,
        counters: collections.Counter[str] | None = None,
        *,
        max_conns: int = 4096,
        max_buffer: int = 4 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.counters: collections.Counter[str] = (
            counters if counters is not None else collections.Counter()
        )
        self.max_conns = max_conns
        self.max_buffer = max_buffer
        self.conns: dict[int, KernelBackend] = {}
        self.poller: Any = None
        self._registered: dict[int, int] = {}
        self._pending: list[tuple[KernelBackend, str]] = []  # errors reported at the next timer
        self._timers: list[tuple[float, int, KernelBackend]] = []
        self._seq = 0
        self._now = 0.0

    # ---- BackendConnector ------------------------------------------------------------------
    def connect(
        self, host: str, port: int, handler: BackendHandler, timeout: float
    ) -> KernelBackend:
        """Start a non-blocking connect; the outcome reaches ``handler`` from the loop."""
        if len(self.conns) >= self.max_conns:
            self.counters["backend.refused_limit"] += 1
            conn = KernelBackend(self, None, handler)
            self._fail(conn, "backend_limit", deferred=True)
            return conn
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = KernelBackend(self, sock, handler)
        self.counters["backend.connects"] += 1
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            self.conns[conn.fd] = conn
            self._fail(conn, _reason(err), deferred=True)
            return conn
        self.conns[conn.fd] = conn
        conn.deadline = self.clock() + timeout
        self._push_timer(conn.deadline, conn)
        self._update(conn)
        return conn

    # ---- the loop's side ---------------------------------------------------------------------
    def attach(self, poller: Any) -> None:
        """Register (now and from now on) the sockets in the loop's poller (ZeroMQ masks)."""
        self.poller = poller
        self._registered.clear()
        for conn in list(self.conns.values()):
            self._update(conn)

    def service(self, ready: dict[Any, int], now: float) -> None:
        """Handle the readiness the loop's poll reported for our sockets."""
        self._now = now
        for fd, events in list(ready.items()):
            conn = self.conns.get(fd) if isinstance(fd, int) else None
            if conn is None or conn.state is DONE:
                continue
            try:
                self._service_one(conn, events, now)
            except Exception:  # noqa: BLE001 - a stage's bug drops its connection, never the loop
                self.counters["backend.handler_errors"] += 1
                self._finish(conn, rst=True)
            if conn.state is not DONE:
                self._update(conn)

    def poll_at(self) -> float | None:
        if self._pending:
            return self._now
        heap = self._timers
        while heap:
            deadline, _, conn = heap[0]
            if conn.state is DONE or conn.deadline != deadline:
                heapq.heappop(heap)
                continue
            return deadline
        return None

    def handle_timer(self, now: float) -> None:
        self._now = now
        pending, self._pending = self._pending, []
        for conn, reason in pending:
            self._report(conn, reason, now)
        heap = self._timers
        while heap and heap[0][0] <= now:
            deadline, _, conn = heapq.heappop(heap)
            if conn.state is DONE or conn.deadline != deadline:
                continue
            conn.deadline = None
            if conn.state is CONNECTING:
                self.counters["backend.connect_timeouts"] += 1
                self._finish(conn, rst=True)
                self._report(conn, "backend_timeout", now)
            else:  # closed by us, the backend never sent its FIN
                self.counters["backend.linger_timeouts"] += 1
                self._finish(conn, rst=True)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._finish(conn, rst=True)
        self._pending.clear()

    def stats(self) -> dict[str, Any]:
        return {"conns": len(self.conns), "counters": dict(self.counters)}

    # ---- internals ---------------------------------------------------------------------------
    def _service_one(self, conn: KernelBackend, events: int, now: float) -> None:
        sock = conn.sock
        assert sock is not None
        if conn.state is CONNECTING:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.counters["backend.connect_failures"] += 1
                self._finish(conn, rst=False)
                self._report(conn, _reason(err), now)
                return
            if not events & (zmq.POLLOUT | zmq.POLLERR):
                return
            conn.state = OPEN
            conn.deadline = None
            self.counters["backend.connected"] += 1
            conn.handler.on_connected(now)
            self._write_and_signal(conn, now)
            return
        if events & zmq.POLLOUT and conn.state is OPEN:
            self._write_and_signal(conn, now)
        if events & (zmq.POLLIN | zmq.POLLERR) and conn.state is OPEN:
            for _ in range(READS_PER_WAKE):
                if conn.read_paused or conn.eof_received or conn.state is not OPEN:
                    break
                try:
                    data = sock.recv(CHUNK)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._finish(conn, rst=True)
                    self._report(conn, _reason(exc.errno or 0), now)
                    return
                if not data:
                    conn.eof_received = True
                    self.counters["backend.eof"] += 1
                    conn.handler.on_eof(now)
                    break
                conn.bytes_in += len(data)
                conn.handler.on_data(data, now)
                if len(data) < CHUNK:
                    break
        if events & zmq.POLLERR and conn.state is OPEN:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:  # e.g. reset while reading is paused: never poll an error forever
                self._finish(conn, rst=True)
                self._report(conn, _reason(err), now)
                return
        if conn.state is OPEN and conn.write_shut and conn.eof_received:
            self._finish(conn, rst=False)  # both directions done

    def _write_and_signal(self, conn: KernelBackend, now: float) -> None:
        had = len(conn.out)
        if conn.state is OPEN:
            self._write(conn)
        if had and not conn.out and conn.state is OPEN:
            conn.handler.on_drained(now)

    def _write(self, conn: KernelBackend) -> None:
        sock = conn.sock
        if sock is None or conn.state is not OPEN:
            return
        while conn.out:
            try:
                n = sock.send(conn.out[: CHUNK * 4])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(conn, _reason(exc.errno or 0), deferred=True)
                return
            conn.bytes_out += n
            del conn.out[:n]
        if conn.close_requested and not conn.write_shut:
            conn.write_shut = True
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if conn.eof_received:
                self._finish(conn, rst=False)

    def _arm_linger(self, conn: KernelBackend) -> None:
        conn.deadline = self.clock() + CLOSE_LINGER
        self._push_timer(conn.deadline, conn)

    def _push_timer(self, deadline: float, conn: KernelBackend) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, conn))

    def _fail(self, conn: KernelBackend, reason: str, *, deferred: bool) -> None:
        """Close now; tell the handler at the next timer (never from inside its own call)."""
        self._finish(conn, rst=True)
        if deferred:
            self._pending.append((conn, reason))

    def _report(self, conn: KernelBackend, reason: str, now: float) -> None:
        self.counters[f"backend.error.{reason}"] += 1
        try:
            conn.handler.on_error(reason, now)
        except Exception:  # noqa: BLE001 - counted; the stage's flow is its own business
            self.counters["backend.handler_errors"] += 1

    def _finish(self, conn: KernelBackend, *, rst: bool) -> None:
        if conn.state is DONE:
            return
        conn.state = DONE
        conn.deadline = None
        self._unregister(conn.fd)
        self.conns.pop(conn.fd, None)
        sock, conn.sock = conn.sock, None
        if sock is not None:
            if rst:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                except OSError:
                    pass
            sock.close()
        self.counters["backend.closed"] += 1

    def _update(self, conn: KernelBackend) -> None:
        if conn.state is DONE or self.poller is None:
            return
        mask = conn.mask()
        if self._registered.get(conn.fd) == mask:
            return
        if mask:
            self.poller.register(conn.fd, mask)
            self._registered[conn.fd] = mask
        else:
            self._unregister(conn.fd)

    def _unregister(self, fd: int) -> None:
        if self._registered.pop(fd, None) is not None and self.poller is not None:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass


__all__ = ["KernelBackend", "KernelConnector"]
