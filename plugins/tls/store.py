"""Server-side session cache for stateful (session ID) resumption.

``SessionStore`` is the small interface a cache implements (rustls's ``StoresServerSessions``):
opaque bytes keyed by session ID. The memory implementation here is an LRU bounded by
``capacity`` with a TTL (``timeout`` seconds from ``put``); a Redis store can implement the same
four methods to share sessions between instances.

``MemorySessionStore`` layout, chosen for memory (issue 7: at most 256 bytes per cached
session). ``nf bench cache`` (RSS over 100,000 sessions, 32-byte IDs) measures ~230 bytes while
the state's SNI + ALPN add up to at most 15 bytes (``tapnf.lab`` alone, or with ``h2``) and ~246
from 16 to 31 bytes (e.g. a 20-character SNI with ``http/1.1``), where the value moves up one
16-byte allocator size class; past 31 bytes it is one class more (~262). Per session: the key
(64 bytes), the value (``bytes``: 33-byte header + 5 + the state's 59 + names: 112 or 128),
the dict's slot (~52 at 100,000 entries: its table is between two resizes) and a deque
reference (8). A hit adds a deque reference to a key of its own (8 + 64) until the older
reference is consumed, as the bytes-keyed store before kept the lookup's ID object (8 + 80).

* ``_entries``: one plain ``dict`` key -> ``bytes``. The key is the session ID read as a
  big-endian int behind a ``0x01`` byte (the marker keeps IDs with leading zero bytes
  distinct): 64 bytes for a 32-byte ID where the ``bytes`` object costs 80. The value is one
  byte ``refs`` || put time (4 bytes, tenths of a second since the store's first put; TTL
  checks are exact to 0.05 s) || the caller's data. Its iteration order is the recency order
  (a hit pops and re-inserts).
* ``_order``: a ``deque`` of keys, least recently used on the left. A hit appends another
  reference instead of moving the first one and bumps the entry's ``refs`` byte (the number of
  older references still in the deque), so eviction pops from the left, skips references whose
  entry still has ``refs`` to spend, and finds the least recently used entry in O(1) amortised.
  References of removed entries are counted in the small ``_dead`` map. When the deque holds
  more than twice as many references as entries it is rebuilt from ``_entries``.
  (A plain dict alone cannot pop its oldest entry in O(1) — deleted slots pile up at its
  front; an ``OrderedDict`` costs ~50 bytes more per entry; a side table of counters ~25.)
* ``_gone``: a bounded tombstone map of recently removed keys -> why (``expired``, ``evicted``,
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

_TIME = struct.Struct(">xI")  # put time after the refs byte: tenths of a second since the epoch
_HDR = _TIME.size  # refs, put time
_TICKS = 10.0
_EPSILON = 0.001
_MAX_REFS = 255
_REFS = [bytes((i,)) for i in range(_MAX_REFS + 1)]
#: Recently removed session IDs remembered for the miss reason.
TOMBSTONES = 16384
#: Largest opaque value accepted (a session state is ~60-100 bytes).
MAX_VALUE = 2048

DropHook = Callable[[str, bytes, float], None]


def _key(session_id: bytes) -> int:
    """The dict key of a session ID (see the module docstring)."""
    return int.from_bytes(b"\x01" + session_id, "big")


def _session_id(key: int) -> bytes:
    return key.to_bytes((key.bit_length() + 7) // 8, "big")[1:]


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
        self._entries: dict[int, bytes] = {}
        self._order: deque[int] = deque()
        self._dead: dict[int, int] = {}
        self._gone: dict[int, str] = {}
        self._gone_order: deque[int] = deque()
        self._gone_cap = tombstones
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0
        self.refused = 0
        self._epoch = 0.0
        self._started = False

    def _pack_time(self, now: float) -> bytes:
        if not self._started:
            self._epoch, self._started = float(int(now)), True
        ticks = round((now - self._epoch) * _TICKS)
        return _TIME.pack(min(max(ticks, 0), 0xFFFFFFFF))

    def _put_time(self, raw: bytes) -> float:
        return self._epoch + _TIME.unpack_from(raw)[0] / _TICKS

    # ---- SessionStore --------------------------------------------------------------------
    def can_cache(self) -> bool:
        return self._capacity > 0

    def put(self, session_id: bytes, data: bytes, now: float) -> bool:
        if self._capacity <= 0 or len(data) > MAX_VALUE:
            self.refused += 1
            return False
        key = _key(session_id)
        if key in self._entries:
            self._remove(key)
        self._entries[key] = self._pack_time(now) + data  # refs 0: the packed pad byte
        self._order.append(key)
        self._gone.pop(key, None)
        while len(self._entries) > self._capacity:
            self._evict_lru(now)
        return True

    def get(self, session_id: bytes, now: float) -> bytes | None:
        key = _key(session_id)
        entries = self._entries
        raw = entries.get(key)
        if raw is None:
            self.misses += 1
            return None
        age = now - self._epoch - _TIME.unpack_from(raw)[0] / _TICKS
        if age > self.timeout:
            self._expired(key, age)
            return None
        self.hits += 1
        # Hit: make it the most recently used (one more reference at the deque's right end).
        refs = raw[0]
        if refs >= _MAX_REFS or len(self._order) > 2 * len(entries) + 64:
            self._rebuild_order()
            raw = entries[key]
            refs = 0
        del entries[key]
        entries[key] = _REFS[refs + 1] + raw[1:]
        self._order.append(key)
        return raw[_HDR:]

    def take(self, session_id: bytes, now: float) -> bytes | None:
        key = _key(session_id)
        raw = self._entries.get(key)
        if raw is None:
            self.misses += 1
            return None
        age = now - self._put_time(raw)
        if age > self.timeout:
            self._expired(key, age)
            return None
        self.hits += 1
        self._remove(key)
        return raw[_HDR:]

    # ---- extras --------------------------------------------------------------------------
    def forgotten(self, session_id: bytes) -> str | None:
        return self._gone.get(_key(session_id))

    def invalidate(self, session_id: bytes, why: str) -> bool:
        """Remove an entry and remember ``why`` (e.g. ``strict``); False if it was not cached."""
        key = _key(session_id)
        if key not in self._entries:
            return False
        self._remove(key)
        self._tombstone(key, why)
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
            key = self._front()
            if key is None:
                break
            put_at = self._put_time(self._entries[key])
            if now - put_at <= self.timeout:
                break
            self._order.popleft()
            self._drop(key, "expired", now - put_at)
            n += 1
        return n

    def next_expiry(self) -> float | None:
        """When the least recently used entry expires (what ``expire`` would look at first)."""
        key = self._front()
        if key is None:
            return None
        # Entries stay valid at exactly ``timeout``: report the first instant they are not, so a
        # loop that wakes at this time finds work instead of spinning on the boundary.
        return self._put_time(self._entries[key]) + self.timeout + _EPSILON

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
        for key, raw in self._entries.items():
            yield _session_id(key), now - self._put_time(raw), raw[_HDR:]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session_id: object) -> bool:
        if not isinstance(session_id, bytes | bytearray | memoryview):
            return False
        return _key(bytes(session_id)) in self._entries

    # ---- internals -----------------------------------------------------------------------
    def _expired(self, key: int, age: float) -> None:
        """A lookup found ``key`` past its TTL: a miss, and the entry goes."""
        self.misses += 1
        self._remove(key)
        self._drop_event(key, "expired", age)

    def _front(self) -> int | None:
        """The least recently used live key; spent references are popped on the way."""
        order, dead, entries = self._order, self._dead, self._entries
        while order:
            key = order[0]
            n = dead.get(key)
            if n:  # a reference from before the entry was removed (older than any live one)
                order.popleft()
                if n == 1:
                    del dead[key]
                else:
                    dead[key] = n - 1
                continue
            raw = entries.get(key)
            if raw is None:  # cannot happen (every removal is counted); stay bounded anyway
                order.popleft()
                continue
            refs = raw[0]
            if refs:  # the entry was used again later: this reference is not its latest
                order.popleft()
                entries[key] = _REFS[refs - 1] + raw[1:]
                continue
            return key
        return None

    def _evict_lru(self, now: float) -> None:
        key = self._front()
        if key is None:  # cannot happen while _entries is non-empty; recover anyway
            self._rebuild_order()
            key = self._front()
            assert key is not None
        self._order.popleft()
        age = now - self._put_time(self._entries[key])
        self._drop(key, "evicted", age)

    def _drop(self, key: int, action: str, age: float) -> None:
        """Remove the entry whose last reference was just popped."""
        del self._entries[key]
        self._drop_event(key, action, age)

    def _drop_event(self, key: int, action: str, age: float) -> None:
        if action == "expired":
            self.expirations += 1
        else:
            self.evictions += 1
        self._tombstone(key, action)
        if self.on_drop is not None:
            self.on_drop(action, _session_id(key), age)

    def _remove(self, key: int) -> None:
        """Forget an entry; all its deque references (``refs`` + 1) become dead."""
        raw = self._entries.pop(key)
        self._dead[key] = self._dead.get(key, 0) + raw[0] + 1
        if len(self._order) > 2 * len(self._entries) + 64:
            self._rebuild_order()

    def _rebuild_order(self) -> None:
        """One reference per entry, in recency order (the dict's order); all refs back to 0."""
        entries = self._entries
        for key, raw in entries.items():
            if raw[0]:
                entries[key] = _REFS[0] + raw[1:]
        self._order = deque(entries)
        self._dead.clear()

    def _tombstone(self, key: int, why: str) -> None:
        if self._gone_cap <= 0:
            return
        if key not in self._gone:
            self._gone_order.append(key)
        self._gone[key] = why
        while len(self._gone_order) > self._gone_cap:
            old = self._gone_order.popleft()
            self._gone.pop(old, None)


__all__ = ["ExplainsMisses", "MemorySessionStore", "SessionStore", "TOMBSTONES"]
