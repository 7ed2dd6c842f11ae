"""TCP benchmark: echo throughput and connection setup rate through the NF (``interface.offload``
off and on), beside the same client against a kernel-socket echo server in the same namespace;
ratios printed from one run.

Run with ``pytest -m benchmark -s tests/e2e/test_tcp_bench.py`` (not part of ``make test``).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

import pytest

import tests.e2e.lab as lab_module
from nf.bench.lab import KERNEL_ECHO
from tests.e2e.conftest import ECHO_VS
from tests.e2e.lab import lab_nf
from tests.e2e.test_tcp_echo import ECHO_CLIENT, PY, VIP, run_json
from tests.e2e.test_tcp_offload import OFFLOAD_CONFIG

CONNECT_RATE = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.monotonic()
for i in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    s.close()
print(json.dumps({"n": n, "secs": round(time.monotonic() - t0, 4)}))
"""

SIZE = 20_000_000
CONNECTS = 500
ROUNDS = 3


@pytest.mark.benchmark
@pytest.mark.timeout(1200)
def test_tcp_bench_nf_versus_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tapnf without and with ``interface.offload`` beside a kernel echo server, interleaved
    rounds; min/median/max and the ratios of the medians to the kernel."""
    rows: dict[str, tuple[list[float], list[float]]] = {}
    with lab_nf(tmp_path / "plain", ECHO_VS) as plain:
        monkeypatch.setattr(lab_module, "BASE_CONFIG", OFFLOAD_CONFIG)
        with lab_nf(tmp_path / "offload", ECHO_VS) as offload:
            server = plain.ns_popen(
                [PY, "-c", KERNEL_ECHO, "192.0.2.1", "7007"], stdout=subprocess.PIPE
            )
            try:
                assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
                cases = (
                    ("tapnf", plain, VIP, 7),
                    ("tapnf+offload", offload, VIP, 7),
                    ("kernel", plain, "192.0.2.1", 7007),
                )
                for _ in range(ROUNDS):
                    for name, lab, host, port in cases:
                        res = run_json(
                            lab, ECHO_CLIENT, host, port, SIZE, 9, "full", "300", timeout=320
                        )
                        assert res["ok"], res
                        rate = run_json(lab, CONNECT_RATE, host, port, CONNECTS, timeout=300)
                        mbps, cps = rows.setdefault(name, ([], []))
                        mbps.append(SIZE / 1e6 / float(res["secs"]))  # type: ignore[arg-type]
                        cps.append(CONNECTS / float(rate["secs"]))  # type: ignore[arg-type]
                        time.sleep(0.2)
            finally:
                server.kill()
                server.wait()
    k_mbps, k_cps = (statistics.median(v) for v in rows["kernel"])
    print()
    print(
        f"{ROUNDS} rounds   {'echo MB/s min/median/max':>28} {'conn/s min/median/max':>24}  ratio MB/s conn/s"
    )
    for name, (mbps, cps) in rows.items():
        m = "/".join(f"{x:.1f}" for x in (min(mbps), statistics.median(mbps), max(mbps)))
        c = "/".join(f"{x:.0f}" for x in (min(cps), statistics.median(cps), max(cps)))
        ratio = f"{statistics.median(mbps) / k_mbps:.3f} {statistics.median(cps) / k_cps:.2f}"
        print(f"{name:14} {m:>28} {c:>24}  {ratio}")
    assert all(min(mbps) > 0 and min(cps) > 0 for mbps, cps in rows.values())
