"""A seeded fault injector for packets in flight (model: smoltcp's ``FaultInjector``, tc netem).

Packets pushed in come out of ``pop_ready(now)`` after ``delay``, except that each one may be
dropped, duplicated, corrupted (one bit flipped) or held back ``reorder_delay`` longer so later
packets overtake it. Every decision comes from the injected ``rng``, so a seed replays a run.
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class FaultConfig:
    drop: float = 0.0  # probability each packet is lost
    duplicate: float = 0.0  # probability each packet is delivered twice
    reorder: float = 0.0  # probability a packet is held back and overtaken
    corrupt: float = 0.0  # probability one bit of a packet is flipped
    delay: float = 0.0  # base one-way latency, seconds
    reorder_delay: float = 0.002  # extra hold for reordered packets, seconds
    max_queue: int = 100_000  # packets in flight; beyond it new ones are dropped and counted

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "corrupt"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"fault.{name}", "must be a probability in [0, 1]", v)
        if self.delay < 0 or self.reorder_delay < 0:
            raise ConfigError("fault.delay", "must not be negative", self.delay)


class FaultInjector:
    def __init__(
        self,
        config: FaultConfig,
        rng: Callable[[int], bytes],
        counters: collections.Counter[str] | None = None,
    ) -> None:
        self.config = config
        self._rng = rng
        self.counters: collections.Counter[str] = (
            counters if counters is not None else collections.Counter()
        )
        self._queue: list[tuple[float, int, bytes]] = []
        self._seq = 0

    def _chance(self, p: float) -> bool:
        if p <= 0.0:
            return False
        return int.from_bytes(self._rng(4), "big") < p * 4294967296.0

    def _enqueue(self, packet: bytes, at: float) -> None:
        if len(self._queue) >= self.config.max_queue:
            self.counters["fault.queue_full"] += 1
            return
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, packet))

    def push(self, packet: bytes, now: float) -> None:
        cfg = self.config
        if self._chance(cfg.drop):
            self.counters["fault.dropped"] += 1
            return
        copies = 2 if self._chance(cfg.duplicate) else 1
        if copies == 2:
            self.counters["fault.duplicated"] += 1
        for _ in range(copies):
            p = packet
            if p and self._chance(cfg.corrupt):
                self.counters["fault.corrupted"] += 1
                r = int.from_bytes(self._rng(4), "big")
                i = r % len(p)
                b = bytearray(p)
                b[i] ^= 1 << ((r >> 24) & 7)
                p = bytes(b)
            at = now + cfg.delay
            if self._chance(cfg.reorder):
                self.counters["fault.reordered"] += 1
                at += cfg.reorder_delay
            self._enqueue(p, at)

    def pop_ready(self, now: float) -> list[bytes]:
        """Packets whose time has come, in release order."""
        out = []
        q = self._queue
        while q and q[0][0] <= now:
            out.append(heapq.heappop(q)[2])
        return out

    def poll_at(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)


__all__ = ["FaultConfig", "FaultInjector"]
