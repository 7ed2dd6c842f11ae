"""MemorySessionStore: LRU order, TTL, tombstones (why an ID is gone), live resizing, bounds,
and the memory cost per cached session."""

from __future__ import annotations

import random
import tracemalloc

from plugins.tls.session import SessionState
from plugins.tls.store import MemorySessionStore, SessionStore


def sid(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


def drops() -> tuple[list[tuple[str, bytes, float]], MemorySessionStore]:
    seen: list[tuple[str, bytes, float]] = []
    store = MemorySessionStore(3, 100, lambda a, s, age: seen.append((a, s, age)))
    return seen, store


def test_is_a_session_store() -> None:
    store: SessionStore = MemorySessionStore(1, 1)
    assert store.can_cache()
    assert not MemorySessionStore(0, 1).can_cache()


def test_put_get_take_round_trip() -> None:
    s = MemorySessionStore(10, 100)
    assert s.put(sid(1), b"state", 0.0)
    assert s.get(sid(1), 1.0) == b"state"
    assert s.take(sid(1), 2.0) == b"state"
    assert s.get(sid(1), 3.0) is None
    assert (s.hits, s.misses) == (2, 1)
    assert s.forgotten(sid(1)) is None  # taken on purpose: not expired nor evicted


def test_capacity_evicts_least_recently_used_and_remembers_why() -> None:
    seen, s = drops()
    for i in range(3):
        s.put(sid(i), b"x", float(i))
    assert s.get(sid(0), 5.0) == b"x"  # 0 becomes most recently used; 1 is now the LRU
    s.put(sid(3), b"x", 6.0)
    assert seen == [("evicted", sid(1), 5.0)]
    assert s.get(sid(1), 7.0) is None and s.forgotten(sid(1)) == "evicted"
    assert [k for k, _, _ in s.items(7.0)] == [sid(2), sid(0), sid(3)]
    assert s.evictions == 1 and len(s) == 3


def test_ttl_expires_on_lookup_and_by_sweep() -> None:
    seen, s = drops()
    s.put(sid(1), b"a", 0.0)
    s.put(sid(2), b"b", 50.0)
    assert s.get(sid(1), 100.0) == b"a"  # exactly at the timeout: still valid
    assert s.get(sid(1), 100.5) is None
    assert s.forgotten(sid(1)) == "expired" and seen[-1][:2] == ("expired", sid(1))
    at = s.next_expiry()
    assert at is not None and 150.0 < at <= 150.01  # first instant it is no longer valid
    assert s.expire(150.0) == 0
    assert s.expire(at) == 1 and len(s) == 0
    assert s.forgotten(sid(2)) == "expired" and s.expirations == 2
    assert s.next_expiry() is None


def test_timeout_change_applies_to_existing_entries() -> None:
    s = MemorySessionStore(10, 100)
    s.put(sid(1), b"a", 0.0)
    s.timeout = 10
    assert s.get(sid(1), 11.0) is None and s.forgotten(sid(1)) == "expired"


def test_shrinking_capacity_evicts_lru_first_with_events() -> None:
    seen: list[tuple[str, bytes, float]] = []
    s = MemorySessionStore(10, 1000, lambda a, k, age: seen.append((a, k, age)))
    for i in range(10):
        s.put(sid(i), b"x", float(i))
    for i in (0, 1, 2):
        s.get(sid(i), 20.0)  # 0,1,2 recently used; 3..9 are older
    assert s.set_capacity(4, 30.0) == 6
    assert [k for _, k, _ in seen] == [sid(i) for i in range(3, 9)]
    assert {k for k, _, _ in s.items(30.0)} == {sid(9), sid(0), sid(1), sid(2)}
    assert s.set_capacity(0, 31.0) == 4 and not s.can_cache()
    assert not s.put(sid(50), b"x", 32.0) and s.refused == 1


def test_reput_moves_to_the_end_and_clears_the_tombstone() -> None:
    seen, s = drops()
    for i in range(3):
        s.put(sid(i), b"x", 0.0)
    s.put(sid(0), b"y", 1.0)
    s.put(sid(3), b"x", 2.0)
    assert seen[0][1] == sid(1)
    s.put(sid(1), b"z", 3.0)
    assert s.forgotten(sid(1)) is None and s.get(sid(1), 3.0) == b"z"


def test_invalidate_and_flush() -> None:
    s = MemorySessionStore(10, 100)
    s.put(sid(1), b"x", 0.0)
    s.put(sid(2), b"x", 0.0)
    assert s.invalidate(sid(1), "strict") and not s.invalidate(sid(1), "strict")
    assert s.forgotten(sid(1)) == "strict"
    assert s.flush() == 1 and len(s) == 0 and s.forgotten(sid(1)) is None


def test_tombstones_are_bounded() -> None:
    s = MemorySessionStore(1, 100, tombstones=5)
    for i in range(20):
        s.put(sid(i), b"x", 0.0)
    assert s.forgotten(sid(18)) == "evicted"
    assert s.forgotten(sid(0)) is None  # forgotten for good past the bound
    assert len(s._gone) == 5 and len(s._gone_order) == 5


def test_oversized_value_refused() -> None:
    s = MemorySessionStore(10, 100)
    assert not s.put(sid(1), b"x" * 5000, 0.0) and s.refused == 1


def test_random_operations_match_a_reference_lru() -> None:
    """Model check against a list-based LRU with the same rules (bounded internal structures)."""
    rnd = random.Random(3)
    cap = 8
    s = MemorySessionStore(cap, 50)
    model: list[tuple[bytes, float, bytes]] = []  # LRU first
    now = 0.0
    for step in range(5000):
        now += rnd.random()
        k = sid(rnd.randrange(20))
        op = rnd.random()
        idx = next((i for i, e in enumerate(model) if e[0] == k), None)
        live = idx is not None and now - model[idx][1] <= 50
        if op < 0.4:
            v = step.to_bytes(4, "big")
            s.put(k, v, now)
            if idx is not None:
                model.pop(idx)
            model.append((k, now, v))
            while len(model) > cap:
                model.pop(0)
        elif op < 0.85:
            got = s.get(k, now)
            if live:
                assert idx is not None
                e = model.pop(idx)
                model.append(e)
                assert got == e[2]
            else:
                if idx is not None:
                    model.pop(idx)
                assert got is None
        elif op < 0.95:
            got = s.take(k, now)
            if idx is not None:
                e = model.pop(idx)
                assert got == (e[2] if live else None)
            else:
                assert got is None
        else:
            s.expire(now)
            model = [e for e in model if now - e[1] <= 50 or e is not model[0]] if model else model
            # expire() stops at the first live LRU entry; mirror that exactly:
            while model and now - model[0][1] > 50:
                model.pop(0)
        assert [x for x, _, _ in s.items(now)] == [x for x, _, _ in model]
        assert len(s._order) <= 2 * len(s) + 65 and len(s._dead) <= len(s._order)


def measure_per_session(
    sni: str | None, alpn: str | None, n: int = 100_000
) -> tuple[float, float, int]:
    """tracemalloc over ``n`` sessions: bytes per cached session after the puts, then bytes
    added per hit when half of them hit once (encoded states built beforehand).

    IDs are made afresh for each call, as the server parses each ClientHello's session ID into
    a new object; so the store is charged for whatever it keeps of them, and a hit for what its
    LRU bookkeeping keeps."""
    states = [
        SessionState(0x0303, 0xC02F, random.Random(i).randbytes(48), True, sni, alpn, 1.7e9 + i)
        for i in range(n)
    ]
    store = MemorySessionStore(n, 3600)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rnd = random.Random(1)
        for i in range(n):
            store.put(rnd.randbytes(32), states[i].encode(), 1.7e9 + i / 1000)
        after_puts = tracemalloc.get_traced_memory()[0]
        rnd = random.Random(1)
        for i in range(n):
            sid = rnd.randbytes(32)
            if i % 2 == 0:
                assert store.get(sid, 1.7e9 + 200) is not None
        after_hits = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(store) == n
    return (after_puts - before) / n, (after_hits - after_puts) / (n // 2), len(states[0].encode())


def test_memory_per_cached_session_100k() -> None:
    typical, per_hit, size = measure_per_session("tapnf.lab", "http/1.1")
    print(f"\nmemory per cached session: {typical:.0f} bytes (state {size} bytes)")
    print(f"a hit's LRU bookkeeping until its older reference is consumed: {per_hit:.0f} bytes")
    assert typical <= 256
    # A hit appends one more deque reference, to the key it computed from the lookup's ID (as
    # the previous bytes-keyed store kept the lookup's 65-byte ID object): a deque slot and a
    # 60-byte int, reclaimed when the older reference is popped or the deque rebuilt.
    assert per_hit <= 8 + 60 + 2
    long_names, _, size = measure_per_session("www.example-lab.net", "http/1.1")
    print(f"memory per cached session: {long_names:.0f} bytes (state {size} bytes)")
    assert long_names <= typical + 12


def test_ids_keep_their_exact_bytes() -> None:
    """IDs are held as ints: leading zero bytes and lengths must still tell them apart."""
    seen: list[tuple[str, bytes, float]] = []
    s = MemorySessionStore(4, 100, lambda a, k, age: seen.append((a, k, age)))
    ids = [b"", b"\x00", b"\x00\x01", b"\x01", b"\x00" * 32]
    for i, k in enumerate(ids):
        s.put(k, bytes([i]), 0.0)
    assert seen == [("evicted", b"", 0.0)] and s.forgotten(b"") == "evicted"
    assert [k for k, _, _ in s.items(1.0)] == ids[1:]
    assert [s.get(k, 1.0) for k in ids[1:]] == [bytes([i]) for i in range(1, 5)]
    assert s.get(bytearray(b"\x00\x01"), 1.0) == b"\x02" and memoryview(b"\x01") in s
    assert b"\x00\x00" not in s and "x" not in s and 1 not in s
    assert s.invalidate(b"\x00", "strict") and s.forgotten(b"\x00") == "strict"
    assert s.forgotten(b"\x00\x00") is None and s.take(b"\x01", 1.0) == b"\x03"
