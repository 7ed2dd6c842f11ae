"""The XPUB event exporter: envelope, seq, never blocking, drop counting, periodic nf.stats."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import zmq

from nf.exporter import FLUSH_EVENTS, MAX_PREFIXES, ZmqEventBus
from pipeline.events import ENVELOPE


def _sub(
    ctx: zmq.Context[Any], endpoint: str, topic: bytes = b"", rcvhwm: int = 1000
) -> zmq.Socket[Any]:
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.rcvhwm = rcvhwm
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    return sub


def _wait_subscribed(bus: ZmqEventBus, n: int = 1) -> None:
    deadline = time.monotonic() + 2.0
    while bus.subscriber_count() < n and time.monotonic() < deadline:
        bus.socket.poll(50)
    assert bus.subscriber_count() >= n


def test_envelope_and_topic(ctx: zmq.Context[Any]) -> None:
    gen = [3]
    bus = ZmqEventBus(ctx, "inproc://ev1", "lab1", lambda: gen[0], wall_clock=lambda: 123.5)
    sub = _sub(ctx, "inproc://ev1", b"tls.")
    try:
        _wait_subscribed(bus)
        bus.emit("tcp.flow", {"conn": 1})  # no subscriber's prefix: skipped, no seq number
        bus.emit("tls.handshake", {"conn": 7, "seq": "spoofed", "outcome": "full"})
        gen[0] = 4
        bus.emit("tls.cache", {"action": "evicted"})
        assert sub.poll(1000)
        topic, payload = sub.recv_multipart()
        assert topic == b"tls.handshake"
        event = msgpack.unpackb(payload)
        assert set(ENVELOPE) <= set(event)
        assert event == {
            "conn": 7,
            "outcome": "full",
            "v": 1,
            "ts": 123.5,
            "seq": 1,
            "instance": "lab1",
            "gen": 3,
        }
        assert sub.poll(1000)
        topic, payload = sub.recv_multipart()
        assert msgpack.unpackb(payload)["seq"] == 2 and msgpack.unpackb(payload)["gen"] == 4
        assert bus.counters["events.published"] == 2
    finally:
        sub.close()
        bus.close()


def test_unencodable_values_are_rendered_not_raised(ctx: zmq.Context[Any]) -> None:
    bus = ZmqEventBus(ctx, "inproc://ev2", "i", lambda: 0)
    sub = _sub(ctx, "inproc://ev2")
    try:
        _wait_subscribed(bus)
        bus.emit(
            "tcp.flow",
            {"addr": object.__new__(type("Addr", (), {"__str__": lambda s: "10.0.0.1"})), "s": {1}},
        )
        assert sub.poll(1000)
        event = msgpack.unpackb(sub.recv_multipart()[1])
        assert event["addr"] == "10.0.0.1" and event["s"] == [1]
    finally:
        sub.close()
        bus.close()


def test_an_event_that_cannot_be_encoded_is_counted_and_the_next_one_is_intact(
    ctx: zmq.Context[Any],
) -> None:
    """The exporter keeps one msgpack packer: a failed pack must not leave bytes behind."""
    bus = ZmqEventBus(ctx, "inproc://ev2b", "i", lambda: 0)
    sub = _sub(ctx, "inproc://ev2b")
    try:
        _wait_subscribed(bus)
        loop: dict[str, Any] = {}
        loop["self"] = loop  # msgpack refuses it (nesting past its limit) after packing a part
        bus.emit("tcp.flow", {"conn": 1, "loop": loop})
        bus.emit("tcp.flow", {"conn": 2})
        assert bus.counters["events.encode_errors"] == 1
        assert sub.poll(1000)
        topic, payload = sub.recv_multipart()
        event = msgpack.unpackb(payload)
        assert topic == b"tcp.flow" and event["conn"] == 2 and event["seq"] == 2
        assert not sub.poll(50)  # nothing of the failed event went out
    finally:
        sub.close()
        bus.close()


def test_stalled_subscriber_never_blocks_and_drops_are_counted(ctx: zmq.Context[Any]) -> None:
    bus = ZmqEventBus(ctx, "inproc://ev3", "i", lambda: 0, hwm=10)
    stalled = _sub(ctx, "inproc://ev3", rcvhwm=10)
    try:
        _wait_subscribed(bus)
        start = time.perf_counter()
        for i in range(2000):
            bus.emit("tls.handshake", {"conn": i})
        elapsed = time.perf_counter() - start
        assert elapsed < 2.0  # never waited for the collector
        dropped = bus.counters["events.dropped"]
        assert dropped > 1900
        assert bus.counters["events.published"] + dropped == 2000
        assert bus.seq == 2000
        # the collector sees a seq gap after what fitted in the queues
        seqs = []
        while stalled.poll(100):
            seqs.append(msgpack.unpackb(stalled.recv_multipart()[1])["seq"])
        assert seqs == list(range(1, len(seqs) + 1))
        bus.emit("tls.handshake", {"conn": "after"})
        assert stalled.poll(1000)
        assert msgpack.unpackb(stalled.recv_multipart()[1])["seq"] == 2001  # gap shows the drops
    finally:
        stalled.close()
        bus.close()


def test_no_subscriber_is_fine(ctx: zmq.Context[Any]) -> None:
    bus = ZmqEventBus(ctx, "inproc://ev4", "i", lambda: 0)
    try:
        for i in range(100):
            bus.emit("x", {"i": i})
        assert bus.counters["events.dropped"] == 0
        assert bus.seq == 0 and bus.counters["events.published"] == 0
    finally:
        bus.close()


def test_stats_published_on_interval(ctx: zmq.Context[Any]) -> None:
    clock = [1000.0]
    bus = ZmqEventBus(
        ctx, "inproc://ev5", "i", lambda: 0, stats_interval=5.0, monotonic=lambda: clock[0]
    )
    sub = _sub(ctx, "inproc://ev5", b"nf.stats")
    try:
        _wait_subscribed(bus)
        assert bus.poll_at() == 1005.0
        bus.tick(1004.9, lambda: {"flows": 2})
        assert not sub.poll(100)
        bus.tick(1005.0, lambda: {"flows": 2})
        assert sub.poll(1000)
        event = msgpack.unpackb(sub.recv_multipart()[1])
        assert event["counters"]["flows"] == 2
        assert event["counters"]["events.subscribers"] == 1
        assert bus.poll_at() == 1010.0
        bus.tick(1100.0)  # far behind: one event, next deadline from now
        assert bus.poll_at() == 1105.0
        assert sub.poll(1000)
        sub.recv_multipart()
        assert not sub.poll(100)
    finally:
        sub.close()
        bus.close()


def test_subscriber_count_follows_collectors(ctx: zmq.Context[Any]) -> None:
    bus = ZmqEventBus(ctx, "inproc://ev6", "i", lambda: 0)
    a = _sub(ctx, "inproc://ev6")
    b = _sub(ctx, "inproc://ev6")
    try:
        _wait_subscribed(bus, 2)
        b.setsockopt(zmq.UNSUBSCRIBE, b"")
        deadline = time.monotonic() + 2.0
        while bus.subscriber_count() != 1 and time.monotonic() < deadline:
            bus.socket.poll(50)
        assert bus.subscriber_count() == 1
    finally:
        a.close()
        b.close()
        bus.close()


def test_only_events_a_subscription_matches_are_built_and_numbered(ctx: zmq.Context[Any]) -> None:
    """A collector subscribed to everything sees contiguous seq numbers while nothing is dropped,
    whatever was skipped before it came; events nobody subscribed to are never encoded."""
    encoded: list[Any] = []

    class Spy:
        def __str__(self) -> str:
            encoded.append(self)
            return "spy"

    bus = ZmqEventBus(ctx, "inproc://ev7", "i", lambda: 0)
    try:
        assert not bus.wants("tcp.flow")
        bus.emit("tcp.flow", {"spy": Spy()})  # nobody: not encoded, no number
        assert encoded == [] and bus.seq == 0
        narrow = _sub(ctx, "inproc://ev7", b"tls.handshake")
        _wait_subscribed(bus)
        assert bus.wants("tls.handshake") and not bus.wants("tls.cache")
        assert not bus.wants("tls")  # a prefix matches longer topics only
        bus.emit("tls.cache", {"n": 0})  # skipped
        bus.emit("tls.handshake", {"n": 1, "spy": Spy()})
        assert len(encoded) == 1
        everything = _sub(ctx, "inproc://ev7", b"")
        _wait_subscribed(bus, 2)
        for n in range(2, 6):
            bus.emit("tcp.flow" if n % 2 else "tls.handshake", {"n": n})
        seqs = []
        while everything.poll(200):
            seqs.append(msgpack.unpackb(everything.recv_multipart()[1])["seq"])
        assert seqs == [2, 3, 4, 5]
        narrow_seqs = []
        while narrow.poll(200):
            narrow_seqs.append(msgpack.unpackb(narrow.recv_multipart()[1])["seq"])
        assert narrow_seqs == [1, 2, 4]
        assert bus.counters["events.published"] == 5
        everything.close()
        narrow.close()
        deadline = time.monotonic() + 2.0
        while bus.subscriptions and time.monotonic() < deadline:  # collectors gone: unsubscribed
            bus.socket.poll(50)
            bus.process(0.0)
        assert not bus.subscriptions and not bus.wants("tls.handshake")
        bus.emit("tls.handshake", {"n": 6})
        assert bus.seq == 5 and bus.counters["events.published"] == 5
    finally:
        bus.close()


def test_stats_are_not_gathered_for_nobody(ctx: zmq.Context[Any]) -> None:
    bus = ZmqEventBus(ctx, "inproc://ev8", "i", lambda: 0, stats_interval=5.0, monotonic=lambda: 0)
    asked: list[int] = []
    try:
        bus.tick(5.0, lambda: asked.append(1) or {})  # type: ignore[func-returns-value]
        assert asked == [] and bus.poll_at() == 10.0 and bus.seq == 0
        assert bus.counters["events.published"] == 0
    finally:
        bus.close()


def test_a_send_that_hid_a_subscription_is_caught_by_flush_check(ctx: zmq.Context[Any]) -> None:
    """Sending processes the socket's commands, which can take the ZMQ_FD edge of a subscription
    that arrived meanwhile: ``flush_check`` (the loop calls it after a wake that sent) reads it."""
    bus = ZmqEventBus(ctx, "inproc://ev9", "i", lambda: 0)
    first = _sub(ctx, "inproc://ev9", b"tls.")
    try:
        _wait_subscribed(bus)
        second = _sub(ctx, "inproc://ev9", b"tcp.")
        deadline = time.monotonic() + 2.0
        while not bus.wants("tcp.flow") and time.monotonic() < deadline:
            time.sleep(0.01)
            bus.emit("tls.handshake", {})
            assert bus.sent
            bus.flush_check(0.0)
            assert not bus.sent
        assert bus.wants("tcp.flow")
        second.close()
    finally:
        first.close()
        bus.close()


def test_past_max_prefixes_every_event_is_sent(ctx: zmq.Context[Any]) -> None:
    """Which topics are wanted is not worked out over more than MAX_PREFIXES live prefixes:
    every event goes to the socket (ZeroMQ filters), so a collector with thousands of prefixes
    cannot make each emit scan them."""
    bus = ZmqEventBus(ctx, "inproc://ev10", "i", lambda: 0)
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    for i in range(MAX_PREFIXES + 1):
        sub.setsockopt(zmq.SUBSCRIBE, b"x.%d" % i)
    sub.connect("inproc://ev10")
    try:
        _wait_subscribed(bus, MAX_PREFIXES + 1)
        assert bus.wants("tcp.flow")
        bus.emit("tcp.flow", {})
        assert bus.seq == 1 and bus.counters["events.published"] == 1
        assert not sub.poll(50)  # filtered by ZeroMQ, as before
    finally:
        sub.close()
        bus.close()


def test_batched_events_are_held_then_sent_in_order(ctx: zmq.Context[Any]) -> None:
    """With a flush delay, events keep the seq and ts they got when emitted but reach the socket
    only at ``flush`` (the loop's job), at ``FLUSH_EVENTS`` held, or at ``close``."""
    clock = [100.0]
    wall = iter(range(1000, 2000))
    bus = ZmqEventBus(
        ctx,
        "inproc://batch",
        "i",
        lambda: 0,
        monotonic=lambda: clock[0],
        wall_clock=lambda: float(next(wall)),
        flush_delay=0.005,
    )
    sub = _sub(ctx, "inproc://batch")
    try:
        _wait_subscribed(bus)
        bus.emit("tcp.flow", {"conn": 1})
        clock[0] = 100.004
        bus.emit("tcp.flow", {"conn": 2})
        assert bus.held_since == 100.0 and not sub.poll(100)
        assert bus.counters["events.published"] == 0
        bus.flush()
        assert bus.held_since is None and bus.counters["events.published"] == 2
        got = [msgpack.unpackb(sub.recv_multipart()[1]) for _ in range(2)]
        assert [(e["conn"], e["seq"], e["ts"]) for e in got] == [(1, 1, 1000.0), (2, 2, 1001.0)]
        for i in range(FLUSH_EVENTS):  # the bound flushes without the loop
            bus.emit("tcp.flow", {"conn": 10 + i})
        assert bus.held_since is None and bus.counters["events.published"] == 2 + FLUSH_EVENTS
        bus.emit("tcp.flow", {"conn": 99})
        assert bus.held_since is not None
    finally:
        bus.close()  # sends what is held
    assert bus.counters["events.published"] == 3 + FLUSH_EVENTS
    seqs = []
    while sub.poll(200):
        seqs.append(msgpack.unpackb(sub.recv_multipart()[1])["seq"])
    sub.close()
    assert seqs == list(range(3, 4 + FLUSH_EVENTS))


def test_batched_events_past_the_high_water_mark_are_dropped_at_the_flush(
    ctx: zmq.Context[Any],
) -> None:
    bus = ZmqEventBus(ctx, "inproc://batchhwm", "i", lambda: 0, hwm=10, flush_delay=1.0)
    stalled = _sub(ctx, "inproc://batchhwm", rcvhwm=10)
    try:
        _wait_subscribed(bus)
        for i in range(50):
            bus.emit("tcp.flow", {"conn": i})
        bus.flush()
        assert bus.counters["events.dropped"] > 0
        total = bus.counters["events.dropped"] + bus.counters["events.published"]
        assert total == 50 and bus.seq == 50
    finally:
        stalled.close()
        bus.close()
