"""``nf bench tls``: in-process server CPU per handshake kind beside its bare crypto floor.

Built on ``plugins.tls.bench``: handshakes with Python's ``ssl`` client over MemoryBIO are
recorded, then the server replays the recorded client flights in a tight loop, as the floor (the
``cryptography`` operations that handshake cannot avoid) is timed; the ratio server/floor is the
figure. A second row per case, without a target, is the server timed while the client ran in
between (cold caches: what the server costs beside other work), against the same floor.
"""

from __future__ import annotations

import os
import time

from nf.bench.figures import Report
from plugins.tls import bench as engine_bench

TARGETS = {
    "full_ecdsa_p256": 1.5,
    "full_rsa_2048": 1.5,
    "resumed_session_id": 4.0,
    "resumed_ticket": 4.0,
}


def run(report: Report, rounds: int, handshakes: int) -> None:
    rows = {
        case: report.row(
            "tls", case, "CPU µs/hs", "floor", better="lower", target=TARGETS.get(case)
        )
        for case in engine_bench.CASES
    }
    with_client = {
        case: report.row("tls", f"{case} +client", "CPU µs/hs", "floor", better="lower")
        for case in engine_bench.CASES
    }
    for _ in range(rounds):
        for res in engine_bench.run(handshakes, time.process_time, os.urandom):
            rows[res.case].add(res.server_us, res.floor_us)
            with_client[res.case].add(res.interleaved_us, res.floor_us)


__all__ = ["TARGETS", "run"]
