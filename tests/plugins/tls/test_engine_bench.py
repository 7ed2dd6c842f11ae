"""Handshake CPU benchmark (``-m benchmark``): server CPU per handshake vs the bare
``cryptography`` floor, printed as ratios measured in one run; plus a quick smoke run in the
normal suite so the benchmark itself cannot rot."""

from __future__ import annotations

import os
import time

import pytest

from plugins.tls.bench import CASES, format_results, run


def test_bench_smoke() -> None:
    results = run(2, time.process_time, os.urandom)
    assert [r.case for r in results] == list(CASES)
    for r in results:
        assert r.server_us > 0 and r.floor_us > 0 and r.handshakes == 2


@pytest.mark.benchmark
def test_bench_handshake_cpu() -> None:
    results = run(300, time.process_time, os.urandom)
    print()
    print(format_results(results))
    for r in results:
        assert r.ratio < 50, r  # a regression guard far above what we measure
