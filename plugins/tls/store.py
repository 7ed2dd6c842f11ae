"""Server-side session cache for stateful (session ID) resumption.

``SessionStore`` is the small interface a cache implements (rustls's ``StoresServerSessions``):
opaque bytes keyed by session ID. The memory implementation here is an LRU bounded by
``capacity`` with a TTL (``timeout`` seconds from ``put``); a Redis store can implement the same
four methods to share sessions between instances.

``MemorySessionStore`` layout, chosen for memory (about 254 bytes per cached session with an
86-byte encoded state, measured by ``tests/plugins/tls/test_store_memory.py``):

* ``_entries``: one plain ``dict`` session ID -> ``bytes``: put time (4 bytes, tenths of a
  second since the store's first put; TTL checks are exact to 0.05 s) || one byte ``refs`` ||
  the caller's data. Its iteration order is the recency order (a hit pops
  and re-inserts).
* ``_order``: a ``deque`` of session IDs, least recently used on the left. A hit appends another
  reference instead of moving the first one and bumps the entry's ``refs`` byte (the number of
  older references still in the deque), so eviction pops from the left, skips references whose
  entry still has ``refs`` to spend, and finds the least recently used entry in O(1) amortised.
  References of removed entries are counted in the small ``_dead`` map. When the deque holds
  more than twice as many references as entries it is rebuilt from ``_entries``.
  (A plain dict alone cannot pop its oldest entry in O(1) — deleted slots pile up at its
  front; an ``OrderedDict`` costs ~50 bytes more per entry; a side table of counters ~25.)
* ``_gone``: a bounded tombstone map of recently removed IDs -> why (``expired``, ``evicted``,
  ``strict``), so a resumption miss can be explained (``cache_expired`` vs ``cache_evicted`` vs
  ``cache_miss``).

Every removal other than ``take`` is reported to ``on_drop(action, session_id, age_s)`` so the
runtime can emit ``tls.cache`` events.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

_TIME = struct.Struct(">I")  # put time: tenths of a second since the store's epoch
_HDR = _TIME.size + 1  # put time, refs
_TICKS = 10.0
_EPSILON = 0.001
_MAX_REFS = 255
#: Recently removed session IDs remembered for the miss reason.
TOMBSTONES = 16384
#: Largest opaque value accepted (a session state is ~70-100 bytes).
MAX_VALUE = 2048

DropHook = Callable[[str, bytes, float], None]


class SessionStore(Protocol):
    """Opaque bytes keyed by session ID. ``now`` is wall-clock seconds."""

    def put(self, session_id: bytes, data: bytes, now: float) -> bool:
        """Store ``data``; False when the store refused it (disabled, too large)."""
        ...

    def get(self, session_id: bytes, now: float) -> bytes | None:
        """The data stored under ``session_id`` if present and not expired."""
        ...

    def take(self, session_id: bytes, now: float) -> bytes | None:
        """Like ``get`` but removes the entry (single use / invalidation)."""
        ...

    def can_cache(self) -> bool:
        """Whether ``put`` would store anything at all (False when the cache is disabled)."""
        ...


@runtime_checkable
class ExplainsMisses(Protocol):
    """A store that remembers why an ID is gone: ``expired``, ``evicted``, ``strict`` or None."""

    def forgotten(self, session_id: bytes) -> str | None: ...


class MemorySessionStore:
    """In-memory LRU with TTL. ``capacity`` 0 disables it; both bounds can change live."""

    def __init__(
        self,
        capacity: int,
        timeout: float,
        on_drop: DropHook | None = None,
        tombstones: int = TOMBSTONES,
    ) -> None:
        self._capacity = capacity
        self.timeout = timeout
        self.on_drop = on_drop
        self._entries: dict[bytes, bytes] = {}
        self._order: deque[bytes] = deque()
        self._dead: dict[bytes, int] = {}
        self._gone: dict[bytes, str] = {}
        self._gone_order: deque[bytes] = deque()
        self._gone_cap = tombstones
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0
        self.refused = 0
        self._epoch: float | None = None

    def _pack_time(self, now: float) -> bytes:
        if self._epoch is None:
            self._epoch = float(int(now))
        ticks = round((now - self._epoch) * _TICKS)
        return _TIME.pack(min(max(ticks, 0), 0xFFFFFFFF))

    def _put_time(self, raw: bytes) -> float:
        return (self._epoch or 0.0) + _TIME.unpack_from(raw)[0] / _TICKS

    # ---- SessionStore --------------------------------------------------------------------
    def can_cache(self) -> bool:
        return self._capacity > 0

    def put(self, session_id: bytes, data: bytes, now: float) -> bool:
        if self._capacity <= 0 or len(data) > MAX_VALUE:
            self.refused += 1
            return False
        if session_id in self._entries:
            self._remove(session_id)
        self._entries[session_id] = self._pack_time(now) + b"\x00" + data
        self._order.append(session_id)
        self._gone.pop(session_id, None)
        while len(self._entries) > self._capacity:
            self._evict_lru(now)
        return True

    def get(self, session_id: bytes, now: float) -> bytes | None:
        raw = self._live(session_id, now)
        if raw is None:
            return None
        # Hit: make it the most recently used (one more reference at the deque's right end).
        refs = raw[_TIME.size]
        if refs >= _MAX_REFS or len(self._order) > 2 * len(self._entries) + 64:
            self._rebuild_order()
            raw = self._entries[session_id]
            refs = 0
        del self._entries[session_id]
        self._entries[session_id] = raw[: _TIME.size] + bytes((refs + 1,)) + raw[_HDR:]
        self._order.append(session_id)
        return raw[_HDR:]

    def take(self, session_id: bytes, now: float) -> bytes | None:
        raw = self._live(session_id, now)
        if raw is None:
            return None
        self._remove(session_id)
        return raw[_HDR:]

    # ---- extras --------------------------------------------------------------------------
    def forgotten(self, session_id: bytes) -> str | None:
        return self._gone.get(session_id)

    def invalidate(self, session_id: bytes, why: str) -> bool:
        """Remove an entry and remember ``why`` (e.g. ``strict``); False if it was not cached."""
        if session_id not in self._entries:
            return False
        self._remove(session_id)
        self._tombstone(session_id, why)
        return True

    @property
    def capacity(self) -> int:
        return self._capacity

    def set_capacity(self, capacity: int, now: float) -> int:
        """Change the bound; shrinking evicts least recently used first. Returns evictions."""
        self._capacity = capacity
        n = 0
        while len(self._entries) > max(capacity, 0):
            self._evict_lru(now)
            n += 1
        return n

    def expire(self, now: float, budget: int = 1024) -> int:
        """Drop expired entries from the least recently used end, at most ``budget`` looked at."""
        n = 0
        for _ in range(budget):
            sid = self._front()
            if sid is None:
                break
            put_at = self._put_time(self._entries[sid])
            if now - put_at <= self.timeout:
                break
            self._order.popleft()
            self._drop(sid, "expired", now - put_at)
            n += 1
        return n

    def next_expiry(self) -> float | None:
        """When the least recently used entry expires (what ``expire`` would look at first)."""
        sid = self._front()
        if sid is None:
            return None
        # Entries stay valid at exactly ``timeout``: report the first instant they are not, so a
        # loop that wakes at this time finds work instead of spinning on the boundary.
        return self._put_time(self._entries[sid]) + self.timeout + _EPSILON

    def flush(self) -> int:
        """Drop everything (tombstones too: a flushed ID is simply unknown). Returns the count."""
        n = len(self._entries)
        self._entries.clear()
        self._order.clear()
        self._dead.clear()
        self._gone.clear()
        self._gone_order.clear()
        return n

    def items(self, now: float) -> Iterator[tuple[bytes, float, bytes]]:
        """(session ID, age seconds, data), least recently used first."""
        for sid, raw in self._entries.items():
            yield sid, now - self._put_time(raw), raw[_HDR:]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries

    # ---- internals -----------------------------------------------------------------------
    def _live(self, session_id: bytes, now: float) -> bytes | None:
        raw = self._entries.get(session_id)
        if raw is None:
            self.misses += 1
            return None
        age = now - self._put_time(raw)
        if age > self.timeout:
            self.misses += 1
            self._remove(session_id)
            self._drop_event(session_id, "expired", age)
            return None
        self.hits += 1
        return raw

    def _front(self) -> bytes | None:
        """The least recently used live ID; spent references are popped on the way."""
        order, dead, entries = self._order, self._dead, self._entries
        while order:
            sid = order[0]
            n = dead.get(sid)
            if n:  # a reference from before the entry was removed (older than any live one)
                order.popleft()
                if n == 1:
                    del dead[sid]
                else:
                    dead[sid] = n - 1
                continue
            raw = entries.get(sid)
            if raw is None:  # cannot happen (every removal is counted); stay bounded anyway
                order.popleft()
                continue
            refs = raw[_TIME.size]
            if refs:  # the entry was used again later: this reference is not its latest
                order.popleft()
                entries[sid] = raw[: _TIME.size] + bytes((refs - 1,)) + raw[_HDR:]
                continue
            return sid
        return None

    def _evict_lru(self, now: float) -> None:
        sid = self._front()
        if sid is None:  # cannot happen while _entries is non-empty; recover anyway
            self._rebuild_order()
            sid = self._front()
            assert sid is not None
        self._order.popleft()
        age = now - self._put_time(self._entries[sid])
        self._drop(sid, "evicted", age)

    def _drop(self, sid: bytes, action: str, age: float) -> None:
        """Remove the entry whose last reference was just popped."""
        del self._entries[sid]
        self._drop_event(sid, action, age)

    def _drop_event(self, sid: bytes, action: str, age: float) -> None:
        if action == "expired":
            self.expirations += 1
        else:
            self.evictions += 1
        self._tombstone(sid, action)
        if self.on_drop is not None:
            self.on_drop(action, sid, age)

    def _remove(self, sid: bytes) -> None:
        """Forget an entry; all its deque references (``refs`` + 1) become dead."""
        raw = self._entries.pop(sid)
        self._dead[sid] = self._dead.get(sid, 0) + raw[_TIME.size] + 1
        if len(self._order) > 2 * len(self._entries) + 64:
            self._rebuild_order()

    def _rebuild_order(self) -> None:
        """One reference per entry, in recency order (the dict's order); all refs back to 0."""
        entries = self._entries
        for sid, raw in entries.items():
            if raw[_TIME.size]:
                entries[sid] = raw[: _TIME.size] + b"\x00" + raw[_HDR:]
        self._order = deque(entries)
        self._dead.clear()

    def _tombstone(self, sid: bytes, why: str) -> None:
        if self._gone_cap <= 0:
            return
        if sid not in self._gone:
            self._gone_order.append(sid)
        self._gone[sid] = why
        while len(self._gone_order) > self._gone_cap:
            old = self._gone_order.popleft()
            self._gone.pop(old, None)


__all__ = ["ExplainsMisses", "MemorySessionStore", "SessionStore", "TOMBSTONES"]
