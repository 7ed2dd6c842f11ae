"""The I/O loop over a real file descriptor (a SOCK_SEQPACKET pair standing in for the TAP): it
answers at once, fires every timer on time while frames keep it awake, asks the components for
their deadlines only when something could have moved one, sleeps when idle and stops on a signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import msgpack
import pytest
import zmq
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether

from nf.config import DEFAULT_MAC, load_config_data
from nf.loop import MAX_SLEEP, Loop
from nf.runtime import Runtime

VIP, PEER = "192.0.2.10", "192.0.2.1"
PEER_MAC = "02:00:00:00:0b:01"


class PairPort:
    """FrameSource/FrameSink over one end of a SOCK_SEQPACKET pair (one datagram per frame)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_frames(self, max_frames: int = 64) -> list[bytes]:
        frames = []
        for _ in range(max_frames):
            try:
                frames.append(self.sock.recv(65536))
            except BlockingIOError:
                break
        return frames

    def write_frame(self, frame: bytes) -> bool:
        self.sock.send(frame)
        return True

    def close(self) -> None:
        self.sock.close()


class Peer:
    """The other end: sends frames, collects what the NF writes with the time it arrived."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(2.0)
        self.sock = sock
        self.frames: list[tuple[float, Ether]] = []

    def send(self, pkt: Any) -> None:
        self.sock.send(raw(Ether(dst=DEFAULT_MAC, src=PEER_MAC) / pkt))

    def recv(self) -> Ether:
        frame = Ether(self.sock.recv(65536))
        self.frames.append((time.monotonic(), frame))
        return frame

    def ping(self, seq: int) -> Ether:
        """One echo request; the reply (other frames that arrive first are kept in ``frames``)."""
        self.send(IP(src=PEER, dst=VIP) / ICMP(id=7, seq=seq) / (b"x" * 32))
        while True:
            frame = self.recv()
            if ICMP in frame and frame[ICMP].type == 0 and frame[ICMP].seq == seq:
                return frame


def make_lab(
    extra: dict[str, Any] | None = None,
) -> Generator[tuple[Runtime, Loop, Peer], None, None]:
    cfg = load_config_data(
        {
            "vips": [{"address": VIP}],
            "tcp": {"rto_initial": 0.1, "rto_min": 0.1},
            "virtual_servers": [{"name": "echo", "port": 7, "chain": ["echo"]}],
            **(extra or {}),
        }
    )
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    rt = Runtime(cfg, port=PairPort(ours)).build()
    loop = Loop(rt)
    try:
        yield rt, loop, Peer(theirs)
    finally:
        rt.close()
        loop.close()
        theirs.close()


@pytest.fixture
def lab() -> Iterator[tuple[Runtime, Loop, Peer]]:
    yield from make_lab()


def run_with(loop: Loop, client: Callable[[], None]) -> None:
    """Run the loop until ``client`` (in a thread) returns; bounded."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            client()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
        finally:
            loop.stopping = True
            os.write(loop._wake_w, b"\0")

    thread = threading.Thread(target=body)
    thread.start()
    try:
        loop.run(max_iterations=200_000)
    finally:
        thread.join(timeout=10)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


def count_calls(rt: Runtime) -> list[float]:
    asked: list[float] = []
    real = rt.poll_at

    def poll_at(now: float | None = None, *, full: bool = True) -> float | None:
        asked.append(time.monotonic())
        return real(now, full=full)

    rt.poll_at = poll_at  # type: ignore[method-assign]
    return asked


def test_echo_requests_are_answered_without_asking_for_deadlines(lab: Any) -> None:
    rt, loop, peer = lab
    asked = count_calls(rt)
    replies: list[Ether] = []
    run_with(loop, lambda: replies.extend(peer.ping(i) for i in range(300)))
    assert len(replies) == 300
    assert rt.counters["icmp.echo_replied"] == 300
    # The start, the stop, the odd once-a-second refresh: not one per wake.
    assert len(asked) < 10, len(asked)


def test_a_tcp_timer_set_during_an_echo_flood_fires_on_time(lab: Any) -> None:
    """A SYN arms the SYN-ACK retransmission timer (RTO 0.1 s); echo requests keep the loop busy
    with wakes that do not ask for deadlines; the retransmission still leaves on time."""
    rt, loop, peer = lab
    synacks: list[float] = []

    def client() -> None:
        peer.send(IP(src=PEER, dst=VIP) / TCP(sport=40000, dport=7, flags="S", seq=1000))
        start = time.monotonic()
        seq = 0
        while time.monotonic() - start < 0.5:
            seq += 1
            peer.ping(seq)
        synacks.extend(t - start for t, f in peer.frames if TCP in f and f[TCP].flags == "SA")

    run_with(loop, client)
    assert len(synacks) >= 2, synacks  # the answer and at least one retransmission
    assert synacks[0] < 0.05
    assert 0.09 <= synacks[1] < 0.4, synacks  # late would be a whole MAX_SLEEP
    assert rt.counters["icmp.echo_replied"] > 10


class WallTimer:
    """A TLS profile's wall-clock timer (ticket rotation, cache expiry), as the runtime sees it."""

    def __init__(self, due_wall: float) -> None:
        self.due_wall: float | None = due_wall
        self.fired: list[float] = []

    def __iter__(self) -> Iterator[WallTimer]:
        return iter([self])  # a registry of one profile

    def poll_at(self) -> float | None:
        return self.due_wall

    def handle_timer(self, wall_now: float) -> None:
        if self.due_wall is not None and wall_now >= self.due_wall:
            self.fired.append(wall_now)
            self.due_wall = None


def test_a_wall_clock_timer_fires_on_time_during_an_echo_flood(lab: Any) -> None:
    rt, loop, peer = lab
    due = time.time() + 0.2
    rt.tls = timer = WallTimer(due)

    def client() -> None:
        start = time.monotonic()
        seq = 0
        while time.monotonic() - start < 0.4:
            seq += 1
            peer.ping(seq)

    run_with(loop, client)
    assert len(timer.fired) == 1
    assert 0 <= timer.fired[0] - due < 0.15


def test_an_idle_loop_sleeps(lab: Any) -> None:
    rt, loop, peer = lab
    asked = count_calls(rt)
    run_with(loop, lambda: time.sleep(0.3))
    # No timer pending: one wait of up to MAX_SLEEP, ended by the stop, never a spin.
    assert MAX_SLEEP >= 0.3
    assert len(asked) <= 3, len(asked)


def test_sigterm_stops_the_loop_at_once(lab: Any) -> None:
    rt, loop, peer = lab
    restore = loop.install_signal_handlers()
    try:
        timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM))
        start = time.monotonic()
        timer.start()
        loop.run(max_iterations=1000)
        assert loop.stopping
        assert time.monotonic() - start < 0.1 + MAX_SLEEP / 2
    finally:
        timer.cancel()
        restore()


@contextlib.contextmanager
def zmq_lab(tmp_path: Any) -> Iterator[tuple[Runtime, Loop, Peer, str, str]]:
    """A lab whose control and event endpoints are ipc sockets in ``tmp_path``:
    (runtime, loop, peer, control endpoint, events endpoint)."""
    control, events = f"ipc://{tmp_path}/control.sock", f"ipc://{tmp_path}/events.sock"
    gen = make_lab({"control": {"endpoint": control, "events": events}})
    rt, loop, peer = next(gen)
    try:
        yield rt, loop, peer, control, events
    finally:
        gen.close()


def _subscribe(ctx: zmq.Context[Any], rt: Runtime, events: str, topic: bytes) -> zmq.Socket[Any]:
    """A collector on ``topic``, returned once the NF counts its subscription (3 s at most)."""
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(events)
    start = time.monotonic()
    while not rt.exporter.subscriptions and time.monotonic() - start < 3.0:
        time.sleep(0.005)
    return sub


def test_control_requests_are_all_answered_between_frames(tmp_path: Any) -> None:
    """More requests than one ``process`` call serves (64), queued at once, while echo requests
    keep the loop busy: the loop comes back for the rest without a new ZMQ_FD edge."""
    replies: list[dict[str, Any]] = []
    took: list[float] = []
    with zmq_lab(tmp_path) as (rt, loop, peer, endpoint, _):
        ctx = zmq.Context()

        def client() -> None:
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(endpoint)
            try:
                start = time.monotonic()
                for i in range(150):
                    sock.send_multipart([b"", msgpack.packb({"id": i, "op": "nf.status"})])
                for seq in range(20):
                    peer.ping(seq)
                while len(replies) < 150 and sock.poll(3000):
                    replies.append(msgpack.unpackb(sock.recv_multipart()[-1]))
                took.append(time.monotonic() - start)
            finally:
                sock.close()

        run_with(loop, client)
        ctx.term()
    assert sorted(r["id"] for r in replies) == list(range(150))
    assert all(r["ok"] for r in replies), replies[0]
    assert took[0] < MAX_SLEEP / 2  # not left for the once-a-second wake


def _open_tcp(peer: Peer, sport: int) -> None:
    """A three-way handshake to the echo service: the NF opens a flow (a ``tcp.flow`` event)."""
    peer.send(IP(src=PEER, dst=VIP) / TCP(sport=sport, dport=7, flags="S", seq=1000))
    while True:
        frame = peer.recv()
        if TCP in frame and frame[TCP].flags == "SA" and frame[TCP].dport == sport:
            break
    ack = frame[TCP].seq + 1
    peer.send(IP(src=PEER, dst=VIP) / TCP(sport=sport, dport=7, flags="A", seq=1001, ack=ack))


def test_a_new_collector_is_seen_on_the_next_wake_and_gets_the_next_event(tmp_path: Any) -> None:
    """Events nobody subscribed to are skipped, so the exporter must learn of a collector at
    once: its subscription is read on the loop's next wake (the XPUB's ZMQ_FD is polled), not at
    the stats tick 10 s away, and the next connection's event reaches it, numbered from 1."""
    got: list[dict[str, Any]] = []
    took: list[float] = []
    with zmq_lab(tmp_path) as (rt, loop, peer, _, events):
        ctx = zmq.Context()

        def client() -> None:
            _open_tcp(peer, 40001)  # nobody listens yet: skipped
            start = time.monotonic()
            sub = _subscribe(ctx, rt, events, b"tcp.flow")
            try:
                took.append(time.monotonic() - start)
                _open_tcp(peer, 40002)
                while sub.poll(300 if got else 2000):
                    got.append(msgpack.unpackb(sub.recv_multipart()[1]))
            finally:
                sub.close()

        run_with(loop, client)
        ctx.term()
        assert rt.counters["tcp.flows_opened"] == 2
        assert rt.exporter.seq == 1  # the first connection's event was not numbered (nor built)
    assert took[0] < MAX_SLEEP / 2, took
    assert [(e["action"], e["client"], e["seq"]) for e in got] == [
        ("opened", f"{PEER}:40002", 1)
    ], got


def test_held_events_reach_a_collector_within_the_flush_delay(tmp_path: Any) -> None:
    """Events are sent in batches, but an idle NF does not sit on them until its next timer:
    the loop's poll timeout ends when the oldest held event is due (FLUSH_DELAY)."""
    from nf.exporter import FLUSH_DELAY

    lags: list[float] = []
    with zmq_lab(tmp_path) as (rt, loop, peer, _, events):
        ctx = zmq.Context()

        def client() -> None:
            sub = _subscribe(ctx, rt, events, b"tcp.flow")
            try:
                for sport in (41001, 41002, 41003):
                    _open_tcp(peer, sport)  # then nothing: the loop has no other reason to wake
                    sent = time.monotonic()
                    if sub.poll(2000):
                        sub.recv_multipart()
                        lags.append(time.monotonic() - sent)
                    time.sleep(0.05)
            finally:
                sub.close()

        run_with(loop, client)
        ctx.term()
        assert rt.exporter.flush_delay == FLUSH_DELAY
    assert len(lags) == 3, lags
    assert max(lags) < MAX_SLEEP / 4, lags  # well before the once-a-second wake


def test_an_event_held_through_a_long_wake_is_sent_at_its_end() -> None:
    """The flush checks read the clock afresh: an event emitted early in a wake that runs past
    ``flush_delay`` goes out when the wake ends, not ``flush_delay`` after that."""
    import types

    from nf.exporter import ZmqEventBus

    ctx = zmq.Context()
    bus = ZmqEventBus(ctx, "inproc://long-wake", "i", lambda: 0, flush_delay=0.2)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect("inproc://long-wake")
    deadline = time.monotonic() + 2
    while bus.subscriber_count() < 1 and time.monotonic() < deadline:
        bus.socket.poll(20)
    r, w = os.pipe()
    os.set_blocking(r, False)
    ended: list[float] = []
    handed: list[float] = []
    flush = bus.flush

    def timed_flush() -> None:
        if bus.held_since is not None:
            handed.append(time.monotonic())
        flush()

    bus.flush = timed_flush  # type: ignore[method-assign]

    class Port:
        def fileno(self) -> int:
            return r

        def read_frames(self, n: int) -> list[bytes]:
            try:
                return [os.read(r, 64)]
            except BlockingIOError:
                return []

        def write_frame(self, frame: bytes) -> None:
            pass

    class Host:
        timers_dirty = False

        def startup_frames(self, now: float) -> list[bytes]:
            return []

        def frames_to_send(self, now: float) -> list[bytes]:
            return []

        def receive_frame(self, frame: bytes, now: float) -> None:
            bus.emit("tls.handshake", {"x": 1})
            time.sleep(0.25)  # the rest of a long wake, past flush_delay
            ended.append(time.monotonic())

    rt = types.SimpleNamespace(
        port=Port(),
        host=Host(),
        exporter=bus,
        control=None,
        subscriber=None,
        backends=None,
        clocks=types.SimpleNamespace(monotonic=time.monotonic),
        poll_at=lambda now, full=True: None,
        handle_timers=lambda now: None,
    )
    loop = Loop(rt)  # type: ignore[arg-type]
    try:
        os.write(w, b"x")
        loop.run(max_iterations=3)
        assert sub.poll(1000)
    finally:
        loop.close()
        os.close(r)
        os.close(w)
        sub.close(linger=0)
        bus.close()
        ctx.term()
    assert handed and handed[0] - ended[0] < 0.1, (handed, ended)  # at the wake's end, not 0.2 s on
