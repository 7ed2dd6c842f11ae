"""The runtime's backend connector (``nf.backends``) with real non-blocking sockets on loopback,
driven the way the loop drives it: a ``zmq.Poller``, ``service(ready)``, ``poll_at``/``handle_timer``."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from nf.backends import KernelConnector


class Handler:
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.data = bytearray()

    def on_connected(self, now: float) -> None:
        self.log.append(("connected", None))

    def on_data(self, data: bytes, now: float) -> None:
        self.data += data

    def on_eof(self, now: float) -> None:
        self.log.append(("eof", None))

    def on_drained(self, now: float) -> None:
        self.log.append(("drained", None))

    def on_error(self, reason: str, now: float) -> None:
        self.log.append(("error", reason))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.log]


@pytest.fixture
def connector() -> Iterator[tuple[KernelConnector, Any]]:
    c = KernelConnector()
    poller = zmq.Poller()
    c.attach(poller)
    yield c, poller
    c.close()


def drive(c: KernelConnector, poller: Any, until: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not until() and time.monotonic() < deadline:
        ready = dict(poller.poll(20))
        now = time.monotonic()
        c.service(ready, now)
        t = c.poll_at()
        if t is not None and t <= now:
            c.handle_timer(now)
    assert until(), "condition not reached in time"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(5)
    yield sock
    sock.close()


def test_refused_is_reported_from_the_loop_not_from_connect(connector: Any) -> None:
    c, poller = connector
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    h = Handler()
    c.connect("127.0.0.1", port, h, 2.0)
    assert h.log == []
    drive(c, poller, lambda: bool(h.log))
    assert h.log == [("error", "backend_refused")]
    assert not c.conns and c.counters["backend.error.backend_refused"] == 1


def test_relay_eof_and_half_close(connector: Any, listener: socket.socket) -> None:
    c, poller = connector
    h = Handler()
    conn = c.connect("127.0.0.1", listener.getsockname()[1], h, 2.0)
    conn.send(b"before connect ")
    peer, _ = listener.accept()
    peer.settimeout(5)
    drive(c, poller, lambda: "connected" in h.kinds())
    conn.send(b"after")
    got = b""
    while len(got) < 20:
        got += peer.recv(100)
    assert got == b"before connect after"
    peer.sendall(b"x" * 300_000)
    peer.shutdown(socket.SHUT_WR)
    drive(c, poller, lambda: "eof" in h.kinds())
    assert bytes(h.data) == b"x" * 300_000
    conn.close()  # our write side: the peer reads EOF; both directions done, socket released
    drive(c, poller, lambda: not c.conns)
    assert peer.recv(10) == b""
    assert "error" not in h.kinds()
    peer.close()


def test_paused_reading_delivers_nothing_until_resumed(
    connector: Any, listener: socket.socket
) -> None:
    c, poller = connector
    h = Handler()
    conn = c.connect("127.0.0.1", listener.getsockname()[1], h, 2.0)
    peer, _ = listener.accept()
    drive(c, poller, lambda: "connected" in h.kinds())
    conn.pause_reading()
    peer.sendall(b"held")
    for _ in range(5):
        c.service(dict(poller.poll(20)), time.monotonic())
    assert h.data == b""
    conn.resume_reading()
    drive(c, poller, lambda: h.data == b"held")
    peer.close()


def test_connect_timeout(connector: Any) -> None:
    c, poller = connector
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue: further SYNs are dropped by the kernel
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.1)
    h = Handler()
    t0 = time.monotonic()
    c.connect("127.0.0.1", port, h, 0.3)
    drive(c, poller, lambda: bool(h.log))
    assert h.log == [("error", "backend_timeout")]
    assert 0.25 <= time.monotonic() - t0 < 3.0
    assert c.counters["backend.connect_timeouts"] == 1 and not c.conns
    for s in (*fillers, full):
        s.close()


def test_connection_limit_and_buffer_bound(listener: socket.socket) -> None:
    c = KernelConnector(max_conns=1, max_buffer=8192)
    poller = zmq.Poller()
    c.attach(poller)
    try:
        port = listener.getsockname()[1]
        first, second = Handler(), Handler()
        conn = c.connect("127.0.0.1", port, first, 2.0)
        c.connect("127.0.0.1", port, second, 2.0)
        assert second.log == []  # never called back from inside connect
        drive(c, poller, lambda: bool(second.log))
        assert second.log == [("error", "backend_limit")]
        assert c.counters["backend.refused_limit"] == 1
        drive(c, poller, lambda: "connected" in first.kinds())
        conn.pause_reading()
        # the peer never reads: the kernel buffers fill, then ours, then the bound refuses
        for _ in range(2000):
            conn.send(b"z" * 65536)
            if first.log[-1][0] == "error" or not c.conns:
                break
        drive(c, poller, lambda: first.log[-1][0] == "error")
        assert first.log[-1] == ("error", "backend_buffer_overflow")
        assert c.counters["backend.buffer_overflows"] == 1
    finally:
        c.close()


def test_abort_sends_rst_and_reports_nothing(connector: Any, listener: socket.socket) -> None:
    c, poller = connector
    h = Handler()
    conn = c.connect("127.0.0.1", listener.getsockname()[1], h, 2.0)
    peer, _ = listener.accept()
    peer.settimeout(5)
    drive(c, poller, lambda: "connected" in h.kinds())
    conn.abort()
    with pytest.raises(ConnectionResetError):
        peer.recv(10)
    for _ in range(3):
        c.service(dict(poller.poll(10)), time.monotonic())
    assert h.kinds() == ["connected"] and not c.conns
    peer.close()


def test_peer_reset_is_reported_as_backend_reset(connector: Any, listener: socket.socket) -> None:
    c, poller = connector
    h = Handler()
    c.connect("127.0.0.1", listener.getsockname()[1], h, 2.0)
    peer, _ = listener.accept()
    drive(c, poller, lambda: "connected" in h.kinds())
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    drive(c, poller, lambda: h.kinds()[-1] == "error")
    assert h.log[-1] == ("error", "backend_reset") and not c.conns
