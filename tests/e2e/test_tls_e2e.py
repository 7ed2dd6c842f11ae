"""TLS termination end to end: real clients (openssl s_client, curl, gnutls-cli) in the lab
namespace, over the kernel's TCP, through the TAP to ``tls:<profile> -> http``. Resumption is
proven by the client's own report (``Reused``, ``re-using session ID``, ``resumed session``) and by
the facts page the http app serves from the handshake's outcome (same data as the event)."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lab import NF, Lab, lab_nf

VIP = "192.0.2.10"
TLS_CONFIG = """
[profiles.clientssl]
cert = "certs/rsa.pem"
key = "certs/rsa.key"
lab_certs = true

[profiles.clientssl_tickets]
certs = [{cert = "certs/ecdsa.pem", key = "certs/ecdsa.key"}, {cert = "certs/rsa.pem", key = "certs/rsa.key"}]
lab_certs = true
session_ticket = true

[profiles.clientssl_ecdsa]
certs = [{cert = "certs/ecdsa.pem", key = "certs/ecdsa.key"}, {cert = "certs/rsa.pem", key = "certs/rsa.key"}]
lab_certs = true

[profiles.clientssl_strict]
cert = "certs/rsa.pem"
key = "certs/rsa.key"
lab_certs = true
strict_resume = true

[[virtual_servers]]
name = "vs_https_strict"
port = 10443
chain = ["tls:clientssl_strict", "http"]

[[virtual_servers]]
name = "vs_https"
port = 443
chain = ["tls:clientssl", "http"]

[[virtual_servers]]
name = "vs_https_tickets"
port = 8443
chain = ["tls:clientssl_tickets", "http"]

[[virtual_servers]]
name = "vs_https_all"
port = 9443
chain = ["tls:clientssl_ecdsa", "http"]

[[virtual_servers]]
name = "vs_tls_echo"
port = 4433
chain = ["tls:clientssl", "echo"]
"""
GET = r"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
SUITES = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
]


@pytest.fixture(scope="module")
def tls_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with lab_nf(tmp_path_factory.mktemp("tls"), TLS_CONFIG) as lab:
        yield lab


def s_client(lab: Lab, port: int, *args: str, send: str = GET) -> str:
    # -ign_eof keeps reading until the server closes (the request says Connection: close);
    # with nothing to send, end at stdin EOF instead.
    ign = "-ign_eof " if send else ""
    cmd = (
        f"printf '{send}' | timeout 15 openssl s_client -connect {VIP}:{port} -tls1_2 {ign}"
        + " ".join(args)
    )
    r = lab.ns(["sh", "-c", cmd], timeout=30)
    return r.stdout + r.stderr


def facts(out: str) -> dict[str, str]:
    return dict(re.findall(r"^(tls_\w+): ?(.*)$", out, re.M))


@pytest.mark.parametrize("suite", SUITES)
def test_full_handshake_per_suite(tls_lab: Lab, suite: str) -> None:
    out = s_client(tls_lab, 9443, "-cipher", suite)
    # s_client's "New, <v>" names the suite's first version (TLSv1.0 for the -SHA suites)
    assert re.search(rf"New, TLSv1\.[02], Cipher is {suite}\n", out), out
    assert re.search(r"Protocol\s*: TLSv1\.2", out), out
    f = facts(out)
    assert f["tls_version"] == "1.2" and f["tls_resumed"] == "false"


def test_session_id_resumption(tls_lab: Lab, tmp_path: Path) -> None:
    sess = tmp_path / "sess.pem"
    first = s_client(tls_lab, 443, "-no_ticket", "-sess_out", str(sess))
    assert "New, TLSv1.2" in first
    sid = facts(first)["tls_session_id"]
    assert len(sid) == 64
    again = s_client(tls_lab, 443, "-no_ticket", "-sess_in", str(sess))
    assert "Reused, TLSv1.2" in again, again
    f = facts(again)
    assert (f["tls_resumed"], f["tls_method"], f["tls_session_id"]) == ("true", "session_id", sid)


def test_ticket_resumption_echoes_session_id(tls_lab: Lab, tmp_path: Path) -> None:
    sess = tmp_path / "ticket.pem"
    first = s_client(tls_lab, 8443, "-sess_out", str(sess))
    assert "New, TLSv1.2" in first and "TLS session ticket lifetime hint" in first
    assert facts(first)["tls_session_id"] == ""  # stateless: empty ServerHello session ID
    again = s_client(tls_lab, 8443, "-sess_in", str(sess))
    assert "Reused, TLSv1.2" in again, again
    f = facts(again)
    assert (f["tls_resumed"], f["tls_method"]) == ("true", "ticket")
    client_sid = re.search(r"Session-ID: ([0-9A-F]+)", again)
    assert client_sid is not None and f["tls_session_id"] == client_sid.group(1).lower()


def test_reconnect(tls_lab: Lab) -> None:
    out = s_client(tls_lab, 443, "-reconnect", send="")
    assert out.count("Reused, TLSv1.2") == 5 and out.count("New, TLSv1.2") == 1, out


def test_curl_twice_reuses_session(tls_lab: Lab) -> None:
    url = f"https://{VIP}/"
    r = tls_lab.ns(
        ["curl", "-skv", "--max-time", "15", "-H", "Connection: close", url, url], timeout=30
    )
    assert r.returncode == 0, r.stderr
    assert "SSL re-using session ID" in r.stderr
    pages = re.findall(r"tls_resumed: (\w+)", r.stdout)
    assert pages == ["false", "true"]


@pytest.mark.parametrize("port", [443, 8443])
def test_gnutls_resume(tls_lab: Lab, port: int) -> None:
    r = tls_lab.ns(
        ["sh", "-c", f"timeout 15 gnutls-cli --insecure --resume -p {port} {VIP} </dev/null"],
        timeout=30,
    )
    assert "This is a resumed session" in r.stdout, r.stdout + r.stderr


def test_tls_echo(tls_lab: Lab) -> None:
    out = s_client(tls_lab, 4433, "-quiet", send="hello tls echo\\n")
    assert "hello tls echo" in out


def test_tls13_only_client_refused(tls_lab: Lab) -> None:
    r = tls_lab.ns(
        ["sh", "-c", f"timeout 15 openssl s_client -connect {VIP}:443 -tls1_3 </dev/null"],
        timeout=30,
    )
    assert "alert protocol version" in (r.stdout + r.stderr)
    assert tls_lab.alive()


PY_CLIENT = r"""
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
session = None
for i in range(2):
    with socket.create_connection(("192.0.2.10", int(sys.argv[1])), timeout=10) as raw:
        with ctx.wrap_socket(raw, session=session) as s:
            s.sendall(b"GET /bytes/100000 HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := s.recv(65536):
                body += chunk
            print(i, s.session_reused, len(body.split(b"\r\n\r\n", 1)[1]))
            session = s.session
"""


@pytest.mark.parametrize("port", [443, 8443])
def test_python_ssl_session_reuse_and_bulk(tls_lab: Lab, port: int, tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(PY_CLIENT)
    r = tls_lab.ns([sys.executable, str(script), str(port)], timeout=60)
    assert r.stdout.split("\n")[:2] == ["0 False 100000", "1 True 100000"], r.stdout + r.stderr


class EventReader:
    """JSON lines from an ``nf events --json`` process, read from the raw pipe (a buffered text
    reader would hide lines from select())."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buf = b""

    def read(self, want: int, timeout: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < want:
            while b"\n" in self.buf and len(out) < want:
                line, self.buf = self.buf.split(b"\n", 1)
                out.append(json.loads(line))
            left = deadline - time.monotonic()
            if len(out) >= want or left <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                self.buf += chunk
        return out


def test_handshake_events_say_why(tmp_path: Path) -> None:
    with lab_nf(tmp_path / "ev", TLS_CONFIG, control=True) as lab:
        assert lab.events is not None
        proc = subprocess.Popen(
            [
                *NF,
                "events",
                "--json",
                "--topic",
                "tls.handshake",
                "--duration",
                "90",
                "--endpoint",
                lab.events,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        reader = EventReader(proc)
        try:
            seen: list[dict[str, Any]] = []
            for _ in range(20):  # until the subscription is live (ZeroMQ slow joiner)
                s_client(lab, 9443, send="")
                seen = reader.read(1, 1.0)
                if seen:
                    break
            assert seen, "no tls.handshake event reached the collector"
            reader.read(100, 1.0)  # drain the probes' events
            sess, tick = tmp_path / "s.pem", tmp_path / "t.pem"
            s_client(lab, 443, "-no_ticket", "-sess_out", str(sess), send="")
            s_client(lab, 443, "-no_ticket", "-sess_in", str(sess), send="")
            s_client(lab, 8443, "-sess_out", str(tick), send="")
            s_client(lab, 8443, "-sess_in", str(tick), send="")
            events = reader.read(4, 30.0)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    got = [(e["outcome"], e["method"], e["reason"], e["offered"]) for e in events]
    assert got == [
        ("full", None, "nothing_offered", "none"),
        ("resumed", "session_id", "resumed", "session_id"),
        ("full", None, "nothing_offered", "none"),
        ("resumed", "ticket", "resumed", "ticket"),
    ]
    assert events[1]["session_id"] == events[0]["session_id"] != ""
    assert events[2]["session_id"] == "" and events[2]["tickets_issued"] == 1
    assert events[3]["session_id"] == events[3]["client_session_id"] != ""
    assert events[3]["ticket_key"] == events[2]["ticket_key"]


def test_bulk_download_over_tls(tls_lab: Lab) -> None:
    url = f"https://{VIP}/bytes/2097152"
    r = tls_lab.ns(
        ["curl", "-sk", "--max-time", "30", "-w", "%{size_download} ", "-o", "/dev/null", url]
        + ["-o", "/dev/null", url],
        timeout=60,
    )
    assert r.stdout == "2097152 2097152 ", r.stdout[:200] + r.stderr


def test_ipv6_vip(tls_lab: Lab) -> None:
    r = tls_lab.ns(
        [
            "curl",
            "-sk",
            "--max-time",
            "15",
            "https://[2001:db8::10]/",
            "https://[2001:db8::10]:8443/",
        ],
        timeout=30,
    )
    assert r.stdout.count("tls_version: 1.2") == 2, r.stdout + r.stderr
    assert "client: [2001:db8::1]:" in r.stdout


@pytest.mark.parametrize(
    ("priority", "expect"),
    [
        ("+AES-128-CBC:+SHA1", "(AES-128-CBC)-(SHA1)"),
        ("+AES-256-CBC:+SHA384", "(AES-256-CBC)-(SHA384)"),
        ("+CHACHA20-POLY1305:+AEAD", "(CHACHA20-POLY1305)"),
        ("+AES-256-GCM:+AEAD", "(AES-256-GCM)"),
    ],
)
def test_gnutls_suites(tls_lab: Lab, priority: str, expect: str) -> None:
    prio = f"NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:-MAC-ALL:{priority}"
    r = tls_lab.ns(
        [
            "sh",
            "-c",
            f"timeout 15 gnutls-cli --insecure -p 9443 --priority '{prio}' {VIP} </dev/null",
        ],
        timeout=30,
    )
    out = r.stdout + r.stderr
    assert "Handshake was completed" in out, out
    assert expect in out, out


@pytest.mark.parametrize(("port", "strict"), [(443, False), (10443, True)])
def test_s_time_reuse_without_close_notify(tls_lab: Lab, port: int, strict: bool) -> None:
    """s_time closes without close_notify: sessions still resume unless strict_resume is on."""
    r = tls_lab.ns(
        ["sh", "-c", f"timeout 20 openssl s_time -connect {VIP}:{port} -reuse -time 1 2>&1"],
        timeout=40,
    )
    marks = "".join(line for line in r.stdout.splitlines() if set(line) <= {"*", "r"})
    assert len(marks) > 5, r.stdout
    if strict:
        assert "r" not in marks, marks
    else:
        assert marks.count("r") >= len(marks) - 1, marks  # only the first is new


@pytest.mark.benchmark
def test_s_time_handshakes_per_second(tls_lab: Lab) -> None:
    """Handshakes per second through the TAP (``-m benchmark``): full vs resumed, per VS."""
    print()
    for port, label in ((443, "session-ID cache, RSA"), (8443, "tickets, ECDSA")):
        for mode in ("-new", "-reuse"):
            r = tls_lab.ns(
                ["sh", "-c", f"openssl s_time -connect {VIP}:{port} {mode} -time 5 2>&1"],
                timeout=60,
            )
            m = re.search(r"(\d+) connections in (\d+) real seconds", r.stdout)
            assert m is not None, r.stdout
            rate = int(m.group(1)) / int(m.group(2))
            print(f"{label:<24}{mode:<8}{rate:8.0f} handshakes/s")
