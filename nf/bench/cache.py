"""``nf bench cache``: memory per cached session and lookup cost of the session-ID cache.

Each round runs in a fresh interpreter (``python -m nf.bench.cache N``) so the RSS growth is
the store's own: N real session states (``SessionState.encode()``, 32-byte IDs) are put into a
``MemorySessionStore`` sized for them, and the growth of the resident set divided by N is the
figure, against the issue's budget of 256 bytes per session (nginx's shared cache holds about
4000 sessions per MB). Lookup cost is ``get`` of a cached ID against a bare ``dict`` lookup of
the same keys (the floor of any Python table).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time

from nf.bench.figures import Report
from nf.bench.procs import rss_bytes

BUDGET = 256.0
LOOKUPS = 200_000


def measure(n: int) -> dict[str, float]:
    """Fill a store with ``n`` sessions; RSS growth per session and µs per lookup."""
    from plugins.tls.session import SessionState
    from plugins.tls.store import MemorySessionStore

    rng = os.urandom
    states = [
        SessionState(0x0303, 0xC02B, rng(48), True, "tapnf.lab", None, 1_800_000_000.0 + i)
        for i in range(64)
    ]
    encoded = [s.encode() for s in states]
    gc.collect()
    store = MemorySessionStore(n, 3600)
    ids: list[bytes] = []
    before = rss_bytes()
    for i in range(n):
        sid = rng(32)
        store.put(sid, encoded[i % 64], 100.0)
        if i % (max(n // 1000, 1)) == 0:
            ids.append(sid)
    gc.collect()
    after = rss_bytes()
    # The sampled IDs are kept in both measurements, so their cost cancels out of the ratio.
    plain = dict.fromkeys(ids, encoded[0])
    k = len(ids)
    get = store.get
    t0 = time.process_time()
    for i in range(LOOKUPS):
        if get(ids[i % k], 200.0) is None:
            raise RuntimeError("cached session not found")
    get_s = time.process_time() - t0
    pget = plain.get
    t0 = time.process_time()
    for i in range(LOOKUPS):
        if pget(ids[i % k]) is None:
            raise RuntimeError("unreachable")
    dict_s = time.process_time() - t0
    return {
        "n": float(n),
        "bytes_per_session": (after - before) / n,
        "lookup_us": get_s / LOOKUPS * 1e6,
        "dict_us": dict_s / LOOKUPS * 1e6,
        "state_bytes": float(len(encoded[0])),
    }


def run(report: Report, rounds: int, sessions: int) -> None:
    mem = report.row(
        "cache",
        f"rss/session ({sessions})",
        "bytes",
        "budget",
        better="lower",
        target=1.0,
        note="reference = 256 B budget (nginx: ~4000 sessions/MB)",
    )
    look = report.row("cache", "lookup (get hit)", "µs", "dict.get", better="lower")
    for _ in range(rounds):
        r = subprocess.run(
            [sys.executable, "-m", "nf.bench.cache", str(sessions)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            raise RuntimeError(f"cache worker failed: {r.stderr.strip()[-400:]}")
        got = json.loads(r.stdout.strip().splitlines()[-1])
        mem.add(got["bytes_per_session"], BUDGET)
        look.add(got["lookup_us"], got["dict_us"])


def main() -> int:
    print(json.dumps(measure(int(sys.argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["BUDGET", "measure", "run"]
