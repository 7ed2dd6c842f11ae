"""TLS offload end to end: ``curl`` in the lab namespace -> the NF (``tls:clientssl -> forward``)
-> a real ``python -m http.server`` on 127.0.0.1 in the root namespace (where the NF runs).

Bodies of 1 KB and 10 MB arrive with the backend's SHA-256; a slow client (``--limit-rate``) and
a slow backend (an upload to a backend that reads slowly) exercise back-pressure both ways; a
backend that refuses (or never answers) resets the client with ``backend_refused``
(``backend_timeout``) in the ``tcp.flow`` event while the NF keeps serving."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lab import NF, Lab, lab_nf

VIP = "192.0.2.10"
SIZES = {"small.bin": 1024, "big.bin": 10 * 1024 * 1024}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files the backend serves, by name -> SHA-256."""
    root = tmp_path_factory.mktemp("site")
    digests = {}
    for name, size in SIZES.items():
        data = os.urandom(size)
        (root / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    digests["root"] = str(root)
    return digests


@contextmanager
def http_server(root: str, host: str) -> Iterator[int]:
    """``python -m http.server`` on ``host`` (root namespace); yields its port."""
    port = free_port(host)
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", host, "-d", root, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("http.server did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def http_backend(site: dict[str, str]) -> Iterator[int]:
    with http_server(site["root"], "127.0.0.1") as port:
        yield port


@pytest.fixture(scope="module")
def http_backend6(site: dict[str, str]) -> Iterator[int]:
    with http_server(site["root"], "::1") as port:
        yield port


class SlowSink:
    """A backend that reads an upload slowly and answers its length and SHA-256 (root ns)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # little kernel slack
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(60)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(60)
            head = b""
            while len(head) < 8:
                head += conn.recv(8 - len(head))
            want = int.from_bytes(head, "big")
            h, got = hashlib.sha256(), 0
            while got < want:
                chunk = conn.recv(min(65536, want - got))
                if not chunk:
                    break
                h.update(chunk)
                got += len(chunk)
                time.sleep(0.01)  # slower than the client: the NF must hold the client back
            conn.sendall(f"{got} {h.hexdigest()}\n".encode())

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


def free_port(host: str = "127.0.0.1") -> int:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def black_hole() -> Iterator[int]:
    """A listener whose accept queue is full: the kernel drops further SYNs (connect times out)."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    yield port
    for s in (*fillers, full):
        s.close()


def config(backend: int, dead: int, sink: int, backend6: int, hole: int) -> str:
    return f"""
[profiles.clientssl]
cert = "certs/rsa.pem"
key = "certs/rsa.key"
lab_certs = true

[[virtual_servers]]
name = "vs_offload"
port = 443
chain = ["tls:clientssl", "forward"]
backend = "127.0.0.1:{backend}"

[[virtual_servers]]
name = "vs_plain"
port = 80
chain = ["forward:127.0.0.1:{backend}"]

[[virtual_servers]]
name = "vs_dead"
port = 8443
chain = ["tls:clientssl", "forward"]
backend = "127.0.0.1:{dead}"
connect_timeout = 2

[[virtual_servers]]
name = "vs_sink"
port = 9443
chain = ["tls:clientssl", "forward"]
backend = "127.0.0.1:{sink}"
buffer = 65536

[[virtual_servers]]
name = "vs_offload6"
port = 10443
chain = ["tls:clientssl", "forward"]
backend = "[::1]:{backend6}"

[[virtual_servers]]
name = "vs_black_hole"
port = 11443
chain = ["tls:clientssl", "forward"]
backend = "127.0.0.1:{hole}"
connect_timeout = 1
"""


@pytest.fixture(scope="module")
def sink() -> Iterator[SlowSink]:
    s = SlowSink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def offload_lab(
    tmp_path_factory: pytest.TempPathFactory,
    http_backend: int,
    http_backend6: int,
    sink: SlowSink,
    black_hole: int,
) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("forward")
    cfg = config(http_backend, free_port(), sink.port, http_backend6, black_hole)
    with lab_nf(workdir, cfg, control=True) as lab:
        yield lab


def fetch(lab: Lab, url: str, *extra: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    out = lab.workdir / f"got-{time.monotonic_ns()}"
    r = lab.ns(["curl", "-sSk", "--max-time", "90", "-o", str(out), *extra, url], timeout=120)
    data = out.read_bytes() if out.exists() else b""
    return hashlib.sha256(data).hexdigest(), r


@pytest.mark.parametrize("name", list(SIZES))
def test_https_download_through_the_offload_matches_the_backend(
    offload_lab: Lab, site: dict[str, str], name: str
) -> None:
    digest, r = fetch(offload_lab, f"https://{VIP}/{name}")
    assert r.returncode == 0, r.stderr
    assert digest == site[name]


def test_ipv6_client_to_ipv6_backend(offload_lab: Lab, site: dict[str, str]) -> None:
    digest, r = fetch(offload_lab, "https://[2001:db8::10]:10443/small.bin")
    assert r.returncode == 0 and digest == site["small.bin"], r.stderr


def test_plain_tcp_forward(offload_lab: Lab, site: dict[str, str]) -> None:
    digest, r = fetch(offload_lab, f"http://{VIP}/small.bin")
    assert r.returncode == 0 and digest == site["small.bin"], r.stderr


def test_slow_client_gets_every_byte(offload_lab: Lab, site: dict[str, str]) -> None:
    """The backend sends 10 MB at once; the client reads at 4 MB/s: the NF pauses the backend
    (its send buffer toward the client is bounded) instead of buffering or dropping."""
    digest, r = fetch(offload_lab, f"https://{VIP}/big.bin", "--limit-rate", "4M")
    assert r.returncode == 0, r.stderr
    assert digest == site["big.bin"]


UPLOAD = r"""
import hashlib, os, socket, ssl, sys
data = os.urandom(int(sys.argv[2]))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("192.0.2.10", int(sys.argv[1])), timeout=60) as raw:
    with ctx.wrap_socket(raw) as s:
        s.sendall(len(data).to_bytes(8, "big") + data)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
print(reply.decode().strip(), len(data), hashlib.sha256(data).hexdigest())
"""


def test_upload_to_a_slow_backend_arrives_whole(offload_lab: Lab, tmp_path: Path) -> None:
    script = tmp_path / "upload.py"
    script.write_text(UPLOAD)
    r = offload_lab.ns([sys.executable, str(script), "9443", str(12 * 1024 * 1024)], timeout=120)
    words = r.stdout.split()
    assert len(words) == 4, r.stdout + r.stderr
    got, got_hash, sent, sent_hash = words
    assert (got, got_hash) == (sent, sent_hash)


def test_backend_down_resets_the_client_and_the_nf_keeps_serving(
    offload_lab: Lab, site: dict[str, str]
) -> None:
    assert offload_lab.events is not None
    proc = subprocess.Popen(
        [*NF, "events", "--json", "--topic", "tcp.flow", "--duration", "60"]
        + ["--endpoint", offload_lab.events],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        fd = proc.stdout.fileno() if proc.stdout else -1
        closed: list[dict[str, Any]] = []
        for _ in range(20):  # until the subscription is live (ZeroMQ slow joiner)
            _, r = fetch(offload_lab, f"https://{VIP}:8443/small.bin")
            # reset after the TLS handshake: curl's recv (56) or send (55) failure
            assert r.returncode in (55, 56), r.stderr
            closed = [e for e in read_events(fd, 1.0) if e.get("action") == "closed"]
            if closed:
                break
        assert closed, "no tcp.flow event reached the collector"
        assert closed[-1]["reason"] == "backend_refused", closed
        # a backend that never answers: the connect timeout (1 s) resets the client
        t0 = time.monotonic()
        _, r = fetch(offload_lab, f"https://{VIP}:11443/small.bin")
        assert r.returncode in (55, 56) and 0.9 < time.monotonic() - t0 < 10, r.stderr
        closed = [e for e in read_events(fd, 2.0) if e.get("action") == "closed"]
        assert [e["reason"] for e in closed] == ["backend_timeout"], closed
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert offload_lab.alive()
    digest, r = fetch(offload_lab, f"https://{VIP}/small.bin")
    assert r.returncode == 0 and digest == site["small.bin"], r.stderr


def read_events(fd: int, timeout: float) -> list[dict[str, Any]]:
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    return [json.loads(line) for line in buf.splitlines() if line.strip()]
