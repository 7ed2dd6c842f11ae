"""forward throughput (``pytest -m benchmark``): 10 MB downloads through the NF (TLS offload and
plain TCP) beside the same download straight from the backend, ratios from one run."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.lab import Lab
from tests.e2e.test_forward_e2e import (  # noqa: F401 - fixtures used by name
    VIP,
    http_backend,
    http_backend6,
    offload_lab,
    sink,
    site,
)

ROUNDS = 3


def timed(argv: list[str]) -> float:
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout == str(10 * 1024 * 1024), r.stdout + r.stderr
    return time.monotonic() - t0


@pytest.mark.benchmark
def test_forward_throughput(offload_lab: Lab, http_backend: int) -> None:  # noqa: F811
    curl = ["curl", "-sk", "-o", "/dev/null", "-w", "%{size_download}"]
    ns = ["ip", "netns", "exec", offload_lab.netns]
    cases = {
        "direct (root ns, kernel TCP)": curl + [f"http://127.0.0.1:{http_backend}/big.bin"],
        "NF forward, plain": ns + curl + [f"http://{VIP}/big.bin"],
        "NF tls -> forward": ns + curl + [f"https://{VIP}/big.bin"],
    }
    best = {name: min(timed(argv) for _ in range(ROUNDS)) for name, argv in cases.items()}
    base = best["direct (root ns, kernel TCP)"]
    print()
    for name, t in best.items():
        print(f"{name:32s} {10 / t:8.1f} MB/s   x{base / t:.2f} of direct")
