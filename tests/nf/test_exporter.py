"""The XPUB event exporter: envelope, seq, never blocking, drop counting, periodic nf.stats."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import zmq

from nf.exporter import ZmqEventBus
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
        bus.emit("tcp.flow", {"conn": 1})  # filtered out by the subscriber's prefix
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
            "seq": 2,
            "instance": "lab1",
            "gen": 3,
        }
        assert sub.poll(1000)
        topic, payload = sub.recv_multipart()
        assert msgpack.unpackb(payload)["seq"] == 3 and msgpack.unpackb(payload)["gen"] == 4
        assert bus.counters["events.published"] == 3
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
        assert bus.counters["events.dropped"] == 0 and bus.seq == 100
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
