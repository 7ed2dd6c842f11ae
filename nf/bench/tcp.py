"""``nf bench tcp``: bulk throughput through ``echo`` and ``tls → echo`` (MB/s, client-measured).

The same client (inside the lab namespace) sends N bytes and reads them back with at most
``WINDOW`` bytes outstanding: to tapnf's ``vs_echo`` (port 7) and ``vs_tls_echo`` (4433, chain
``tls:clientssl → echo``) through the TAP, and to nginx ``stream`` on the veth (7: proxy to a kernel
echo; 4433: TLS terminated by nginx, proxied to the same echo). The echoed bytes are checked. A
third row puts tapnf's plain echo beside the kernel echo itself.
"""

from __future__ import annotations

from nf.bench.figures import Report
from nf.bench.lab import REF_B, VIP, BenchLab, LabError

ECHO_PORT = 7007
CLIENT = r"""
import hashlib, json, socket, ssl, sys, time
host, port, size, use_tls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
CHUNK, WINDOW = 16384, 65536
raw = socket.create_connection((host, port), timeout=20)
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s = raw
if use_tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    s = ctx.wrap_socket(raw, server_hostname="tapnf.lab")
block = bytes(range(256)) * (CHUNK // 256)
sent = got = 0
h_in = hashlib.blake2b()
t0 = time.monotonic()
while got < size:
    if sent < size and sent - got < WINDOW:
        n = min(CHUNK, size - sent)
        s.sendall(block[:n])
        sent += n
        continue
    data = s.recv(262144)
    if not data:
        raise SystemExit("connection closed early at %d of %d" % (got, size))
    h_in.update(data)
    got += len(data)
secs = time.monotonic() - t0
h_out = hashlib.blake2b()
left = size
while left:
    n = min(CHUNK, left)
    h_out.update(block[:n])
    left -= n
ok = h_in.digest() == h_out.digest()
s.close()
print(json.dumps({"bytes": got, "secs": secs, "ok": ok}))
"""


def bulk(lab: BenchLab, host: str, port: int, size: int, tls: bool) -> float:
    """MB/s of one echo transfer of ``size`` bytes."""
    res = lab.python_json(CLIENT, host, port, size, int(tls), timeout=600)
    if not res.get("ok"):
        raise LabError(f"echo through {host}:{port} returned different bytes")
    return size / 1e6 / float(res["secs"])


def run(lab: BenchLab, have_nginx: bool, report: Report, rounds: int, size: int) -> None:
    kernel = report.row("tcp", "echo", "MB/s", "kernel echo")
    cases = []
    if have_nginx:
        cases = [
            (report.row("tcp", "echo", "MB/s", "nginx stream"), 7, False),
            (report.row("tcp", "tls->echo", "MB/s", "nginx stream ssl"), 4433, True),
        ]
    for _ in range(rounds):
        nf_plain = bulk(lab, VIP, 7, size, False)
        kernel.add(nf_plain, bulk(lab, REF_B, ECHO_PORT, size, False))
        for row, port, tls in cases:
            ours = nf_plain if port == 7 else bulk(lab, VIP, port, size, tls)
            row.add(ours, bulk(lab, REF_B, port, size, tls))


__all__ = ["CLIENT", "bulk", "run"]
