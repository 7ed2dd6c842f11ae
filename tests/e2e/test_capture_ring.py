"""A live ring capture (``capture.start ... max_bytes files``) under real curl traffic: the NF keeps
``files`` files of at most ``max_bytes``, counts the rotations, and each file opens in tshark with
the connections whose handshake it holds decrypted from its own secrets."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from plugins.capture.pcapng import read_pcapng
from tests.e2e.lab import Lab, lab_nf

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

CONFIG = """
[profiles.clientssl]
cert = "certs/rsa.pem"
key = "certs/rsa.key"
lab_certs = true

[[virtual_servers]]
name = "vs_https"
port = 443
chain = ["tls:clientssl", "http"]
"""
MAX_BYTES = 32768
FILES = 3


def ctl(lab: Lab, op: str, *args: str) -> dict[str, Any]:
    assert lab.control is not None
    r = lab.nf("ctl", "--json", "--endpoint", lab.control, op, *args)
    reply: dict[str, Any] = json.loads(r.stdout)
    assert reply["ok"], reply
    return reply["result"]


def test_ring_files_rotate_and_each_decrypts_its_connections(tmp_path: Path) -> None:
    ring = tmp_path / "ring.pcapng"
    with lab_nf(tmp_path, CONFIG, control=True) as lab:
        ctl(lab, "capture.start", f"path={str(ring)!r}", f"max_bytes={MAX_BYTES}", f"files={FILES}")
        # one connection per request (resumed by session ID after the first)
        urls = [f"https://192.0.2.10/bytes/8000?n={i}" for i in range(16)]
        curl = ["curl", "-sk", "--tls-max", "1.2", "--max-time", "10", "-H", "Connection: close"]
        r = lab.ns([*curl, *urls], timeout=60)
        assert r.returncode == 0, r.stderr
        [status] = ctl(lab, "capture.status")["captures"]
        ctl(lab, "capture.stop", f"path={str(ring)!r}")
    counters = status["counters"]
    assert counters["capture.rotations"] >= FILES and counters["capture.files_deleted"] >= 1
    assert counters.get("capture.dropped", 0) == 0
    files = sorted(tmp_path.glob("ring*.pcapng"))
    assert [f.name for f in files] == ["ring.1.pcapng", "ring.2.pcapng", "ring.pcapng"]
    decrypted = 0
    for f in files:
        assert f.stat().st_size <= MAX_BYTES
        cap = read_pcapng(f)  # well formed, every block
        r = subprocess.run(
            [
                "tshark",
                "-r",
                str(f),
                "-o",
                "tls.keylog_file:",
                "-Y",
                "http.request",
                "-T",
                "fields",
                "-e",
                "http.request.uri",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        uris = r.stdout.split()
        # a connection decrypts in the file holding its handshake and its secret
        secrets = b"".join(data for _, data in cap.secrets).splitlines()
        assert len(uris) <= len(secrets)
        decrypted += len(uris)
    assert decrypted >= 4
