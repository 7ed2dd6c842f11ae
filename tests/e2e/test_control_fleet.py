"""Fleet push end to end: two NF instances, each on its own TAP, subscribed over CURVE to one
``nf push`` controller. After a ticket-key push, a ticket issued by one instance resumes on the
other (and before the push it does not)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
from contextlib import ExitStack
from pathlib import Path

from nf.curve import generate
from tests.e2e.lab import NF, Lab, lab_nf

VS = """
[profiles.clientssl]
cert = "certs/rsa.pem"
key = "certs/rsa.key"
lab_certs = true
session_ticket = true

[[virtual_servers]]
name = "vs_tls"
port = 443
chain = ["tls:clientssl", "http"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def control_table(workdir: Path, keys: dict[str, Path], nf_key: Path, push: str) -> str:
    return f"""
[control]
endpoint = "ipc://{workdir}/control.sock"
events = "ipc://{workdir}/events.sock"
subscribe = "{push}"
subscribe_server_key = "{keys["server_public"]}"
curve_secret_key = "{nf_key}"
curve_authorized_keys = "{keys["authorized"]}"
"""


def handshake(lab: Lab, sess_in: Path | None = None, sess_out: Path | None = None) -> str:
    argv = ["openssl", "s_client", "-connect", "192.0.2.10:443", "-tls1_2"]
    argv += ["-sess_in", str(sess_in)] if sess_in else []
    argv += ["-sess_out", str(sess_out)] if sess_out else []
    r = lab.ns(argv, timeout=30, input="")
    assert "CONNECTED" in r.stdout, r.stdout + r.stderr
    return "reused" if "Reused, TLSv1.2" in r.stdout else "new"


def ctl(lab: Lab, workdir: Path, op: str, *args: str) -> dict[str, object]:
    r = lab.nf("ctl", "--json", "--endpoint", f"ipc://{workdir}/control.sock", op, *args)
    assert r.returncode == 0, r.stderr + r.stdout + lab.drain_output()
    result: dict[str, object] = json.loads(r.stdout)["result"]
    return result


def test_key_push_makes_tickets_portable_across_instances(tmp_path: Path) -> None:
    keys = generate(tmp_path / "keys", "nf1")
    nf2_key = generate(tmp_path / "keys2", "nf2")["client_secret"]
    (keys["authorized"] / "nf2.key").write_bytes(
        nf2_key.with_suffix("").with_suffix(".key").read_bytes()
    )
    push = f"tcp://127.0.0.1:{free_port()}"
    w1, w2 = tmp_path / "nf1", tmp_path / "nf2"
    fleet_keys = tmp_path / "fleet.keys"
    fleet_keys.write_text(
        "".join(base64.b64encode(os.urandom(80)).decode() + "\n" for _ in range(2))
    )
    with ExitStack() as stack:
        w1.mkdir()
        w2.mkdir()
        nf1 = stack.enter_context(
            lab_nf(w1, VS + control_table(w1, keys, keys["client_secret"], push))
        )
        nf2 = stack.enter_context(lab_nf(w2, VS + control_table(w2, keys, nf2_key, push)))
        before = tmp_path / "before.pem"
        assert handshake(nf1, sess_out=before) == "new"
        assert handshake(nf2, sess_in=before) == "new"  # each instance has its own keys

        r = subprocess.run(
            [
                *NF,
                "push",
                "--bind",
                push,
                "--keys",
                str(fleet_keys),
                "--curve-secret-key",
                str(keys["server_secret"]),
                "--authorized",
                str(keys["authorized"]),
                "--subscribers",
                "2",
                "--duration",
                "20",
                "--version",
                "7",
            ],
            capture_output=True,
            text=True,
            timeout=40,
        )
        assert r.returncode == 0, r.stderr + r.stdout
        pushed = fleet_keys.read_text().split()[0]
        pushed_name = base64.b64decode(pushed)[:16].hex()
        for lab, wd in ((nf1, w1), (nf2, w2)):
            for _ in range(50):
                listed = ctl(lab, wd, "tls.tickets.list", "profile=clientssl")["keys"]
                if listed and listed[0]["name"] == pushed_name:  # type: ignore[index]
                    break
                subprocess.run(["sleep", "0.1"], check=True)
            else:
                raise AssertionError(f"push never applied on {wd.name}")
            stats = ctl(lab, wd, "nf.stats")["counters"]
            assert stats["push.applied"] == 1, stats  # type: ignore[index]

        after = tmp_path / "after.pem"
        assert handshake(nf1, sess_out=after) == "new"
        assert handshake(nf2, sess_in=after) == "reused"  # sealed by nf1, opened by nf2
        assert handshake(nf1, sess_in=after) == "reused"
