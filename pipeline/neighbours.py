"""The neighbour table (IP -> MAC, bounded LRU) and the queue of packets waiting for resolution.

Addresses are packed ``bytes`` (4 for IPv4, 16 for IPv6). Both structures are bounded and count
what their bound refused in the shared ``counters``: ``neighbour.evicted`` for table evictions,
``drop.queue_full`` / ``drop.pending_full`` / ``drop.unresolved`` for packets that never left.
Sans-IO: time comes in as ``now``.
"""

from __future__ import annotations

import collections
from collections import OrderedDict
from dataclasses import dataclass, field

RETRY_INTERVAL = 1.0  # seconds between ARP requests / neighbour solicitations
MAX_ATTEMPTS = 3  # probes sent before the queued packets are dropped as ``unresolved``
MAX_QUEUED_PER_NEIGHBOUR = 16
MAX_PENDING_NEIGHBOURS = 64


class NeighbourTable:
    """IP -> MAC with least-recently-used eviction beyond ``limit`` entries."""

    def __init__(self, limit: int, counters: collections.Counter[str]) -> None:
        if limit < 1:
            raise ValueError(f"neighbour limit must be positive, got {limit}")
        self.limit = limit
        self.counters = counters
        #: ip -> MAC, least recently used first; read-only outside (the host stack's per-frame
        #: lookup and refresh of a known neighbour, as ``lookup``/``learn`` do them)
        self.entries: OrderedDict[bytes, bytes] = OrderedDict()

    def lookup(self, ip: bytes) -> bytes | None:
        mac = self.entries.get(ip)
        if mac is not None:
            self.entries.move_to_end(ip)
        return mac

    def learn(self, ip: bytes, mac: bytes) -> None:
        entries = self.entries
        known = entries.get(ip)
        if known is not None:
            entries.move_to_end(ip)
            if known == mac:  # the common case (every frame from a known peer): nothing to write
                return
            self.counters["neighbour.changed"] += 1
        else:
            self.counters["neighbour.learned"] += 1
            if len(entries) >= self.limit:
                entries.popitem(last=False)
                self.counters["neighbour.evicted"] += 1
        entries[ip] = mac

    def update_if_known(self, ip: bytes, mac: bytes) -> None:
        """RFC 826's merge rule: refresh an entry we already have, create none."""
        if ip in self.entries:
            self.learn(ip, mac)

    def forget(self, ip: bytes) -> None:
        self.entries.pop(ip, None)

    def items(self) -> list[tuple[bytes, bytes]]:
        return list(self.entries.items())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, ip: object) -> bool:
        return ip in self.entries


@dataclass
class Pending:
    """One neighbour being resolved: who asks (our address), the packets waiting, the retry clock."""

    src: bytes
    next_probe: float
    attempts: int = 1
    packets: list[bytes] = field(default_factory=list)  # complete IP packets


class PendingQueue:
    """Packets waiting for a neighbour's MAC, bounded per neighbour and in neighbours."""

    def __init__(
        self,
        counters: collections.Counter[str],
        *,
        per_neighbour: int = MAX_QUEUED_PER_NEIGHBOUR,
        neighbours: int = MAX_PENDING_NEIGHBOURS,
        retry_interval: float = RETRY_INTERVAL,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.counters = counters
        self.per_neighbour = per_neighbour
        self.neighbours = neighbours
        self.retry_interval = retry_interval
        self.max_attempts = max_attempts
        #: neighbour -> its queue; read-only outside (the host stack's per-frame ``ip in``)
        self.waiting: dict[bytes, Pending] = {}

    def enqueue(self, dst: bytes, src: bytes, packet: bytes, now: float) -> bool:
        """Queue ``packet`` for ``dst``; True when a first probe should be sent now.

        A packet the bounds refuse is counted (``drop.queue_full`` / ``drop.pending_full``).
        """
        entry = self.waiting.get(dst)
        if entry is None:
            if len(self.waiting) >= self.neighbours:
                self.counters["drop.pending_full"] += 1
                return False
            self.waiting[dst] = Pending(src, now + self.retry_interval, packets=[packet])
            return True
        if len(entry.packets) >= self.per_neighbour:
            self.counters["drop.queue_full"] += 1
            return False
        entry.packets.append(packet)
        return False

    def resolved(self, ip: bytes) -> list[bytes]:
        """The packets waiting for ``ip`` (now resolved), in order; forgets the entry."""
        entry = self.waiting.pop(ip, None)
        return entry.packets if entry is not None else []

    def poll_at(self) -> float | None:
        if not self.waiting:
            return None
        return min(e.next_probe for e in self.waiting.values())

    def due(self, now: float) -> list[tuple[bytes, bytes]]:
        """(neighbour, our source address) pairs to probe again now; gives up on the exhausted
        ones, counting each of their packets as ``drop.unresolved``."""
        again: list[tuple[bytes, bytes]] = []
        for ip, entry in list(self.waiting.items()):
            if entry.next_probe > now:
                continue
            if entry.attempts >= self.max_attempts:
                del self.waiting[ip]
                self.counters["drop.unresolved"] += len(entry.packets)
                self.counters["neighbour.unresolved"] += 1
                continue
            entry.attempts += 1
            entry.next_probe = now + self.retry_interval
            again.append((ip, entry.src))
        return again

    def __contains__(self, ip: object) -> bool:
        return ip in self.waiting

    def __len__(self) -> int:
        return len(self.waiting)


__all__ = ["NeighbourTable", "Pending", "PendingQueue"]
