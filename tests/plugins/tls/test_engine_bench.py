"""Handshake CPU benchmark (``-m benchmark``): server CPU per handshake vs the bare
``cryptography`` floor, printed as ratios measured in one run; plus a quick smoke run in the
normal suite so the benchmark itself cannot rot."""

from __future__ import annotations

import os
import time

import pytest

from plugins.tls import bench
from plugins.tls.bench import CASES, format_results, run


def test_bench_smoke() -> None:
    """Every case records and replays (``run`` raises if a replayed handshake does not end as
    recorded: a full one full, a resumed one resumed)."""
    results = run(2, time.process_time, os.urandom)
    assert [r.case for r in results] == list(CASES)
    for r in results:
        assert r.server_us > 0 and r.floor_us > 0 and r.interleaved_us > 0 and r.handshakes == 2


def test_replay_pays_for_what_it_plays_back() -> None:
    """The tape returns the recorded bytes and signatures but still draws and signs."""
    draws: list[int] = []

    def rng(n: int) -> bytes:
        draws.append(n)
        return os.urandom(n)

    tape = bench._Tape(rng)
    first = tape(32)
    assert tape.signed(b"sig") == b"sig"
    tape.rewind()
    assert tape(32) == first and tape.signed(b"other") == b"sig"
    assert draws == [32, 32]


def test_a_replay_that_diverges_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the tape stopped playing back, the replayed server would answer differently, the
    recorded client Finished would not verify, and the bench must say so instead of timing
    failed handshakes."""
    monkeypatch.setattr(bench._Tape, "rewind", lambda self: None)
    with pytest.raises(RuntimeError, match="replayed handshakes ended"):
        run(2, time.process_time, os.urandom, cases=("full_ecdsa_p256",))


@pytest.mark.benchmark
def test_bench_handshake_cpu() -> None:
    results = run(300, time.process_time, os.urandom)
    print()
    print(format_results(results))
    for r in results:
        assert r.ratio < 50, r  # a regression guard far above what we measure
