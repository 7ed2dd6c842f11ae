"""TCP benchmark: echo throughput and connection setup rate through the NF, beside the same client
against a kernel-socket echo server in the same namespace; ratios printed from one run.

Run with ``pytest -m benchmark -s tests/e2e/test_tcp_bench.py`` (not part of ``make test``).
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.lab import Lab
from tests.e2e.test_tcp_echo import ECHO_CLIENT, PY, VIP, run_json

KERNEL_ECHO = r"""
import selectors, socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(1024)
srv.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is srv:
            c, _ = srv.accept()
            c.setblocking(True)
            sel.register(c, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(262144)
        except ConnectionError:
            data = b""
        if data:
            s.sendall(data)
        else:
            sel.unregister(s)
            s.close()
"""

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


@pytest.mark.benchmark
@pytest.mark.timeout(600)
def test_tcp_bench_nf_versus_kernel(lab: Lab) -> None:
    server = lab.ns_popen([PY, "-c", KERNEL_ECHO, "192.0.2.1", "7007"], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        rows = []
        for name, host, port in (("tapnf", VIP, 7), ("kernel", "192.0.2.1", 7007)):
            res = run_json(lab, ECHO_CLIENT, host, port, SIZE, 9, "full", "300", timeout=320)
            assert res["ok"], res
            mbps = SIZE / 1e6 / float(res["secs"])  # type: ignore[arg-type]
            rate = run_json(lab, CONNECT_RATE, host, port, CONNECTS, timeout=300)
            cps = CONNECTS / float(rate["secs"])  # type: ignore[arg-type]
            rows.append((name, mbps, cps))
            time.sleep(0.5)
    finally:
        server.kill()
        server.wait()
    (_, nf_mbps, nf_cps), (_, k_mbps, k_cps) = rows
    print()
    print(f"{'':8} {'echo MB/s':>10} {'conn/s':>10}")
    for name, mbps, cps in rows:
        print(f"{name:8} {mbps:10.1f} {cps:10.0f}")
    print(f"{'ratio':8} {nf_mbps / k_mbps:10.2f} {nf_cps / k_cps:10.2f}")
    assert nf_mbps > 0 and nf_cps > 0
