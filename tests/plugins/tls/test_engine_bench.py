"""Handshake CPU benchmark (``-m benchmark``): server CPU per handshake vs the bare
``cryptography`` floor, printed as ratios measured in one run; plus a quick smoke run in the
normal suite so the benchmark itself cannot rot."""

from __future__ import annotations

import hashlib
import os
import ssl
import time

import pytest

from plugins.tls import bench
from plugins.tls.bench import CASES, format_results, run
from plugins.tls.certs import CertResolver
from plugins.tls.profile import TlsProfile
from plugins.tls.resumption import ProfileRuntime
from plugins.tls.server import HandshakeComplete, TlsServerConnection


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


# ---- the server alone: recorded client flights replayed (resumed kinds) ------------------------
class _CountingRng:
    """Deterministic per connection (reset before each replay), so the server's output, and with
    it the recorded client flights, stay valid on every replay."""

    def __init__(self, seed: bytes) -> None:
        self.seed, self.i = seed, 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self.seed + self.i.to_bytes(8, "big")).digest()
            self.i += 1
        return out[:n]


def _server_alone(case: str, n: int) -> tuple[float, float]:
    """(server µs, floor µs) per handshake for a resumed kind, the server replaying one client's
    flights in a tight loop like the floor (no client work between the server's calls)."""
    pair = bench._pair("ecdsa")
    tickets = case == "resumed_ticket"
    prof = TlsProfile(name="bench", certs=(pair,), groups=("x25519",), session_ticket=tickets)
    wall = 1_800_000_000.0
    runtime = ProfileRuntime(prof, rng=os.urandom, wall_clock=lambda: wall)
    resolver = CertResolver.from_pairs(prof.certs)
    ctx = bench._client(0 if tickets else bench.OP_NO_TICKET)
    first = TlsServerConnection(runtime, resolver, os.urandom)
    session = bench._Timed(time.process_time).handshake(ctx, first, None, wall).session
    rng = _CountingRng(b"replay")
    conn = TlsServerConnection(runtime, resolver, rng)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, session=session)
    flights: list[bytes] = []
    for _ in range(20):
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        data = out.read()
        if data:
            flights.append(data)
            conn.receive_data(data, wall)
        back = conn.data_to_send()
        if back:
            inc.write(back)
        if done and not data and not back:
            break
    assert obj.session_reused
    spent = 0.0
    for _ in range(n):
        rng.i = 0
        t0 = time.process_time()
        c = TlsServerConnection(runtime, resolver, rng)
        for data in flights:
            c.receive_data(data, wall)
            c.data_to_send()
        spent += time.process_time() - t0
        ev = c.next_event()
        assert isinstance(ev, HandshakeComplete) and ev.info.outcome == "resumed", ev
    floor = bench._floor(case, pair, n, time.process_time, os.urandom)
    return spent / n * 1e6, floor / n * 1e6


@pytest.mark.parametrize("case", ["resumed_session_id", "resumed_ticket"])
def test_server_alone_replay_smoke(case: str) -> None:
    server_us, floor_us = _server_alone(case, 3)
    assert server_us > 0 and floor_us > 0


@pytest.mark.benchmark
def test_server_alone_resumed() -> None:
    """The resumed kinds with the server alone (replayed flights, hot caches like the floor's):
    the in-process benchmark above interleaves the client, which costs the server ~45 µs."""
    print()
    for case in ("resumed_session_id", "resumed_ticket"):
        rounds = sorted(_server_alone(case, 1000) for _ in range(3))
        s = [r[0] for r in rounds]
        ratios = sorted(r[0] / r[1] for r in rounds)
        print(
            f"{case:<22} server alone {s[1]:6.0f} µs  ratio min/med/max {ratios[0]:.2f}/{ratios[1]:.2f}/{ratios[2]:.2f}"
        )
