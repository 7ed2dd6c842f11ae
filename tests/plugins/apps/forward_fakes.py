"""Fakes for the forward stage's collaborators: a backend connector and the client side."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.chain import BackendHandler


class FakeConn:
    """A backend connection whose peer is the test: ``take`` reads what was sent to it."""

    def __init__(self, host: str, port: int, handler: BackendHandler, timeout: float) -> None:
        self.host, self.port, self.handler, self.timeout = host, port, handler, timeout
        self.pending = bytearray()  # accepted by send, not yet taken by the backend
        self.received = bytearray()  # what the backend took
        self.closed = False
        self.aborted = False
        self.paused = False

    @property
    def buffered(self) -> int:
        return len(self.pending)

    def send(self, data: bytes) -> None:
        assert not self.closed and not self.aborted
        self.pending += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def take(self, n: int | None = None, now: float = 0.0) -> bytes:
        """The backend reads ``n`` bytes (all by default); ``on_drained`` when emptied."""
        n = len(self.pending) if n is None else n
        data = bytes(self.pending[:n])
        del self.pending[:n]
        self.received += data
        if data and not self.pending:
            self.handler.on_drained(now)
        return data


class FakeConnector:
    def __init__(self) -> None:
        self.conns: list[FakeConn] = []

    def connect(self, host: str, port: int, handler: BackendHandler, timeout: float) -> FakeConn:
        conn = FakeConn(host, port, handler, timeout)
        self.conns.append(conn)
        return conn


class Down:
    """The client side: a Downstream and a FlowControl with a settable send queue."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted: str | None = None
        self.paused = False
        self.queued = 0
        self.drain: tuple[int, Callable[[float], None]] | None = None

    def send(self, data: bytes) -> None:
        assert not self.closed and self.aborted is None
        self.data += data
        self.queued += len(data)

    def close(self) -> None:
        self.closed = True

    def abort(self, reason: str) -> None:
        self.aborted = reason

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def send_queued(self) -> int:
        return self.queued

    def notify_drained(self, low: int, callback: Callable[[float], None]) -> None:
        self.drain = (low, callback)

    def ack(self, n: int, now: float = 0.0) -> None:
        """The client acknowledged ``n`` bytes."""
        self.queued -= n
        if self.drain is not None and self.queued <= self.drain[0]:
            cb, self.drain = self.drain[1], None
            cb(now)
