"""The whole frame path (host stack, TCP, TLS stage and engine, http) replays s_time-shaped
connections deterministically: the same client frames give byte-identical output, every
resumption resumes, no frame or flow meets an internal error. The benchmark prints the CPU per
connection of the replay (the A/B figure for work on this path)."""

from __future__ import annotations

import pytest

from tests.pipeline.wire_replay import deterministic_ecdsa, record, replay


@pytest.mark.parametrize("case", ["resumed_id", "resumed_ticket", "full"])
def test_replay_is_byte_identical_and_clean(case: str) -> None:
    with deterministic_ecdsa():
        script, digest, rec = record(case, 6)
        _, again, lab = replay(script)
    assert again == digest
    want = {"full": 6} if case == "full" else {"full": 1, "resumed": 6}
    assert rec.bus.outcomes == want and lab.bus.outcomes == want
    counters = lab.runtime.counters
    assert counters["tcp.flows_opened"] == counters["tcp.flows_closed"] == sum(want.values())
    assert not counters["tcp.internal_errors"] and not counters["drop.internal"]
    assert len(lab.runtime.tcp) == 0  # every flow gone (RST)


@pytest.mark.benchmark
@pytest.mark.parametrize("case", ["resumed_id", "resumed_ticket", "full"])
def test_replay_cpu_per_connection(case: str) -> None:
    with deterministic_ecdsa():
        script, digest, _ = record(case, 500)
        runs = []
        for _ in range(5):
            spent, got, _ = replay(script)
            assert got == digest
            runs.append(spent)
    n = 500 + (case != "full")
    per = sorted(r / n * 1e6 for r in runs)
    print(f"\n{case}: CPU us/conn min {per[0]:.1f} med {per[2]:.1f} max {per[-1]:.1f}")
