"""NeighbourTable (bounded LRU) and PendingQueue (bounded packets awaiting resolution, retries)."""

from __future__ import annotations

import collections

import pytest

from pipeline.neighbours import NeighbourTable, PendingQueue

A, B, C = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 3])
M1, M2 = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def test_table_learns_updates_and_evicts_least_recently_used() -> None:
    counters: collections.Counter[str] = collections.Counter()
    table = NeighbourTable(2, counters)
    table.learn(A, M1)
    table.learn(B, M1)
    assert table.lookup(A) == M1  # A is now most recent
    table.learn(B, M2)
    assert counters["neighbour.changed"] == 1
    table.learn(C, M2)  # order was A (looked up), then B (re-learned): A is the oldest
    assert A not in table and B in table and C in table
    assert counters["neighbour.evicted"] == 1 and counters["neighbour.learned"] == 3
    assert len(table) == 2


def test_update_if_known_creates_nothing() -> None:
    counters: collections.Counter[str] = collections.Counter()
    table = NeighbourTable(4, counters)
    table.update_if_known(A, M1)
    assert A not in table
    table.learn(A, M1)
    table.update_if_known(A, M2)
    assert table.lookup(A) == M2
    table.forget(A)
    assert table.lookup(A) is None


def test_table_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError):
        NeighbourTable(0, collections.Counter())


def test_pending_queue_bounds_and_release_order() -> None:
    counters: collections.Counter[str] = collections.Counter()
    q = PendingQueue(counters, per_neighbour=2, neighbours=1)
    assert q.enqueue(A, C, b"p1", 0.0) is True  # first packet: probe now
    assert q.enqueue(A, C, b"p2", 0.1) is False
    assert q.enqueue(A, C, b"p3", 0.2) is False
    assert q.enqueue(B, C, b"q1", 0.3) is False
    assert counters == {"drop.queue_full": 1, "drop.pending_full": 1}
    assert q.resolved(A) == [b"p1", b"p2"]
    assert q.resolved(A) == [] and len(q) == 0 and q.poll_at() is None


def test_pending_queue_retries_then_gives_up() -> None:
    counters: collections.Counter[str] = collections.Counter()
    q = PendingQueue(counters, retry_interval=1.0, max_attempts=3)
    q.enqueue(A, C, b"p1", 0.0)
    q.enqueue(A, C, b"p2", 0.5)
    assert q.poll_at() == 1.0
    assert q.due(0.9) == []
    assert q.due(1.0) == [(A, C)]
    assert q.poll_at() == 2.0
    assert q.due(2.0) == [(A, C)]
    assert q.due(3.0) == []  # third probe was the last: give up
    assert A not in q and q.poll_at() is None
    assert counters["drop.unresolved"] == 2 and counters["neighbour.unresolved"] == 1
