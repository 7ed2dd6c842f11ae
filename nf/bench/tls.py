"""``nf bench tls``: in-process server CPU per handshake kind beside its bare crypto floor.

Built on ``plugins.tls.bench`` (engine A's harness: Python ``ssl`` client over MemoryBIO, only the
server's ``receive_data``/``data_to_send`` timed with the process CPU clock; the floor is the
``cryptography`` operations that handshake cannot avoid). Each round runs every case and its
floor once; the ratio server/floor is the figure.
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
    for _ in range(rounds):
        for res in engine_bench.run(handshakes, time.process_time, os.urandom):
            rows[res.case].add(res.server_us, res.floor_us)


__all__ = ["TARGETS", "run"]
