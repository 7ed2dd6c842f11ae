"""The event exporter: a ZeroMQ PUB-side socket implementing ``pipeline.events.EventBus``.

Every event goes out as multipart ``[topic, msgpack map]`` with the envelope fields of
``pipeline.events.ENVELOPE`` added (``v``, ``ts``, ``seq``, ``instance``, ``gen``). Publishing never
blocks: the socket is an XPUB with ``XPUB_NODROP`` so that a full subscriber queue (past the
high-water mark) makes a ``NOBLOCK`` send fail at once; the event is dropped and counted in
``events.dropped``. ``seq`` counts every event, sent or not, so collectors see the gap.
``tick(now)`` publishes ``nf.stats`` every ``stats_interval`` seconds; ``poll_at()`` says when.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import zmq

from nf.curve import CurveAuth, CurveConfig, secure_bind
from pipeline.events import SCHEMA_VERSION

# Subscription notices drained per tick (every stats_interval): XPUB_VERBOSER queues one per
# (un)subscribe, so the bound must outrun collector churn between ticks (~6500/s at 10 s).
MAX_SUBSCRIPTION_MESSAGES = 65536
MAX_TOPICS = 256  # encoded topic names kept (events have a dozen topics; plugins may add some)
_MORE = zmq.SNDMORE | zmq.NOBLOCK


def _fallback(obj: Any) -> Any:
    """Encode what msgpack does not know (addresses, enums, sets) as something readable."""
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, memoryview | bytearray):
        return bytes(obj)
    return str(obj)


class ZmqEventBus:
    """PUB endpoint for events. ``gen`` returns the profile generation in force."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        endpoint: str,
        instance: str,
        gen: Callable[[], int],
        hwm: int | None = None,
        *,
        config: Any = None,
        stats_interval: float | None = None,
        curve: CurveConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if config is not None:
            hwm = hwm if hwm is not None else config.hwm
            stats_interval = stats_interval if stats_interval is not None else config.stats_interval
            curve = curve if curve is not None else config.curve()
        if endpoint.partition("://")[0] != "tcp":
            curve = None  # CURVE guards tcp:// endpoints; ipc:// has file permissions
        self.endpoint = endpoint
        self.instance = instance
        self.gen = gen
        self.hwm = hwm if hwm is not None else 10000
        self.stats_interval = stats_interval if stats_interval is not None else 10.0
        self.wall = wall_clock
        self.counters: collections.Counter[str] = collections.Counter()
        self.seq = 0
        # One packer for every event (``packb`` builds one per call); it resets itself after
        # each ``pack``, and after a failed one too.
        self._packer = msgpack.Packer(use_bin_type=True, default=_fallback)
        self._topics: dict[str, bytes] = {}
        self.subscriptions: collections.Counter[bytes] = collections.Counter()
        self._ctx = ctx
        self._auth: CurveAuth | None = None
        self.socket: zmq.Socket[Any] = ctx.socket(zmq.XPUB)
        self.socket.linger = 0
        self.socket.sndhwm = self.hwm
        self.socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.socket.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscribe, to count collectors
        try:
            self._auth = secure_bind(ctx, self.socket, endpoint, curve)
        except zmq.ZMQError:
            self.close()
            raise
        self._next_stats = monotonic() + self.stats_interval

    # -- EventBus ----------------------------------------------------------------------------
    def emit(self, topic: str, fields: Mapping[str, Any]) -> None:
        """Publish one event; never blocks, never raises."""
        self.seq += 1
        event = dict(fields)
        event.update(
            v=SCHEMA_VERSION, ts=self.wall(), seq=self.seq, instance=self.instance, gen=self._gen()
        )
        try:
            payload = self._packer.pack(event)
        except Exception:  # noqa: BLE001 - an unencodable field must not reach the data path
            self.counters["events.encode_errors"] += 1
            return
        name = self._topics.get(topic)
        if name is None:
            name = topic.encode("utf-8", "replace")
            if len(self._topics) < MAX_TOPICS:
                self._topics[topic] = name
        try:
            # What send_multipart does, without its per-part checks: a multipart message is
            # queued whole or not at all (the high-water mark is checked on its first part).
            send = self.socket.send
            send(name, _MORE)
            send(payload, zmq.NOBLOCK)
        except zmq.Again:
            self.counters["events.dropped"] += 1
            return
        except zmq.ZMQError:
            self.counters["events.send_errors"] += 1
            return
        self.counters["events.published"] += 1

    def _gen(self) -> int:
        try:
            return int(self.gen())
        except Exception:  # noqa: BLE001
            return -1

    # -- timers ------------------------------------------------------------------------------
    def poll_at(self) -> float:
        return self._next_stats

    def tick(self, now: float, stats: Callable[[], Mapping[str, Any]] | None = None) -> None:
        """Drain subscription notices; publish ``nf.stats`` when its interval is due."""
        self._drain_subscriptions()
        if now < self._next_stats:
            return
        self._next_stats += self.stats_interval
        if self._next_stats <= now:  # the loop fell behind: no burst of catch-up events
            self._next_stats = now + self.stats_interval
        counters: dict[str, Any] = dict(stats()) if stats is not None else {}
        counters.update(self.counters)
        counters["events.subscribers"] = self.subscriber_count()
        self.emit("nf.stats", {"counters": dict(sorted(counters.items()))})

    def _drain_subscriptions(self) -> None:
        for _ in range(MAX_SUBSCRIPTION_MESSAGES):
            try:
                msg = self.socket.recv(zmq.NOBLOCK)
            except zmq.ZMQError:
                return
            if not msg:
                continue
            if msg[0] == 1:
                self.subscriptions[msg[1:]] += 1
            elif msg[0] == 0 and self.subscriptions[msg[1:]] > 0:
                self.subscriptions[msg[1:]] -= 1

    def subscriber_count(self) -> int:
        """Live subscriptions (a collector subscribing to several prefixes counts several)."""
        self._drain_subscriptions()
        return sum(self.subscriptions.values())

    def close(self) -> None:
        if self.socket is not None and not self.socket.closed:
            self.socket.close(linger=0)
        if self._auth is not None:
            self._auth.release(self._ctx)
            self._auth = None


__all__ = ["ZmqEventBus"]
