"""Benchmark: a slow or absent collector never slows the data path.

Resumed TLS 1.2 handshakes (Python's ssl client over MemoryBIO against our engine, the cheapest
handshake, so event cost weighs the most) publish through the real ZeroMQ exporter: with no
subscriber, with a subscriber that never reads (its queue fills, events are dropped and counted),
and with one that keeps up. Prints the rates and their ratios measured in one run. The stalled
collector is held against the live one: with no collector the exporter skips every event."""

from __future__ import annotations

import time
from typing import Any

import pytest
import zmq

from nf.exporter import ZmqEventBus
from tests.plugins.tls.engine_harness import Server, client_context, handshake, profile

N = 300


def _rate(
    server: Server, bus: ZmqEventBus, ctx: Any, session: Any, drain: zmq.Socket[Any] | None
) -> float:
    start = time.perf_counter()
    for i in range(N):
        client, _, _ = handshake(server, ctx, session=session)
        assert client.obj.session_reused
        bus.emit(
            "tls.handshake",
            {"conn": i, "outcome": "resumed", "method": "session_id", "history": "csgifg"},
        )
        if drain is not None:
            while drain.poll(0):
                drain.recv_multipart()
    return N / (time.perf_counter() - start)


@pytest.mark.benchmark
def test_stalled_collector_does_not_slow_handshakes() -> None:
    zctx: zmq.Context[Any] = zmq.Context()
    server = Server(profile(certs=("p256",), cache_size=1000))
    bus = ZmqEventBus(zctx, "inproc://bench", "bench", lambda: 0, hwm=100)
    server.runtime.bus = bus
    cctx = client_context()
    first, _, _ = handshake(server, cctx)
    session = first.obj.session
    stalled = zctx.socket(zmq.SUB)
    live = zctx.socket(zmq.SUB)
    try:
        _rate(server, bus, cctx, session, None)  # warm-up
        none = _rate(server, bus, cctx, session, None)
        stalled.rcvhwm = 100
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect("inproc://bench")
        while bus.subscriber_count() < 1:
            bus.socket.poll(10)
        dropped_before = bus.counters["events.dropped"]
        slow = _rate(server, bus, cctx, session, None)
        dropped = bus.counters["events.dropped"] - dropped_before
        stalled.close(linger=0)
        live.setsockopt(zmq.SUBSCRIBE, b"")
        live.connect("inproc://bench")
        while bus.subscriber_count() < 1:
            bus.socket.poll(10)
        keeping_up = _rate(server, bus, cctx, session, live)
        print(
            f"\nresumed handshakes/s: no collector {none:.0f}, stalled collector {slow:.0f} "
            f"({slow / none:.2f}x, {dropped} events dropped), live collector {keeping_up:.0f} "
            f"({keeping_up / none:.2f}x)"
        )
        assert dropped > 0  # the stalled collector really was past its high-water mark
        # against a live collector: with none, events are not even built (nobody subscribed)
        assert slow > 0.7 * keeping_up
    finally:
        bus.close()
        zctx.destroy(linger=0)
