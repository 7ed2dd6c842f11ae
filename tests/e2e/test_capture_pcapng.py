"""Captures a user opens in Wireshark: real curl and openssl s_client (full and resumed handshakes,
stateful and stateless) through the NF, then real tshark reads the pcapng with no key file given:
it decrypts the HTTP inside (the secrets are embedded in DSBs), shows the session IDs and session
tickets where the seed article shows them, and the ServerHello frames carry the verdicts.

One capture comes from the config (``[capture] pcapng``), a second is started and stopped live
over the control channel (``capture.start`` / ``capture.status`` / ``capture.stop``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.io.pcap import read_pcap
from plugins.capture.pcapng import read_pcapng
from tests.e2e.lab import Lab, lab_nf

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

VIP = "192.0.2.10"
CONFIG = """
[profiles.clientssl]
cert = "certs/rsa.pem"
key = "certs/rsa.key"
lab_certs = true

[profiles.clientssl_tickets]
cert = "certs/rsa.pem"
key = "certs/rsa.key"
lab_certs = true
session_ticket = true

[[virtual_servers]]
name = "vs_https"
port = 443
chain = ["tls:clientssl", "http"]

[[virtual_servers]]
name = "vs_https_tickets"
port = 8443
chain = ["tls:clientssl_tickets", "http"]

[capture]
pcapng = "{path}"
pcap = "{path}.pcap"
"""
GET = r"GET /stateful HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"


@dataclass
class Captured:
    config_file: Path
    live_file: Path
    live_started: dict[str, Any]
    live_status: dict[str, Any]
    curl: str
    curl6: str
    clients: list[str]
    flushed_live: bool


def ctl(lab: Lab, op: str, *args: str) -> dict[str, Any]:
    assert lab.control is not None
    r = lab.nf("ctl", "--json", "--endpoint", lab.control, op, *args)
    reply: dict[str, Any] = json.loads(r.stdout)
    assert reply["ok"], reply
    return reply["result"]


def s_client(lab: Lab, port: int, *args: str, path: str = "/") -> str:
    send = GET.replace("/stateful", path)
    cmd = (
        f"printf '{send}' | timeout 15 openssl s_client -connect {VIP}:{port} -tls1_2 -ign_eof "
        + " ".join(args)
    )
    r = lab.ns(["sh", "-c", cmd], timeout=30)
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    work = tmp_path_factory.mktemp("capture")
    config_file, live_file = work / "config.pcapng", work / "live.pcapng"
    with lab_nf(work, CONFIG.format(path=config_file), control=True) as lab:
        started = ctl(lab, "capture.start", f"path={str(live_file)!r}", "resolution=ns")
        r = lab.ns(
            ["curl", "-sk", "--tls-max", "1.2", "--max-time", "10", f"https://{VIP}/curl"],
            timeout=30,
        )
        curl = r.stdout + r.stderr
        sess = work / "sess.pem"
        tick = work / "tick.pem"
        clients = [
            s_client(lab, 443, "-sess_out", str(sess), path="/full-id"),
            s_client(lab, 443, "-sess_in", str(sess), path="/resumed-id"),
            s_client(lab, 8443, "-sess_out", str(tick), path="/full-ticket"),
            s_client(lab, 8443, "-sess_in", str(tick), path="/resumed-ticket"),
        ]
        r = lab.ns(
            ["curl", "-sk", "--tls-max", "1.2", "--max-time", "10", "https://[2001:db8::10]/v6"],
            timeout=30,
        )
        curl6 = r.stdout + r.stderr
        # the capture is flushed while it runs (frames or the runtime's timers): the last
        # request shows up decrypted in the live file without stopping anything
        flushed_live = False
        deadline = time.monotonic() + 5.0
        while not flushed_live and time.monotonic() < deadline:
            time.sleep(0.2)
            r = subprocess.run(
                [
                    "tshark",
                    "-r",
                    str(live_file),
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
                timeout=30,
            )
            flushed_live = "/v6" in r.stdout.split()
        status = ctl(lab, "capture.status")
        stopped = ctl(lab, "capture.stop")["stopped"]
        assert {s["path"] for s in stopped} == {
            str(config_file),
            f"{config_file}.pcap",
            str(live_file),
        }
        assert ctl(lab, "capture.status") == {"captures": []}
        yield Captured(config_file, live_file, started, status, curl, curl6, clients, flushed_live)


def tshark(path: Path, *args: str) -> list[list[str]]:
    r = subprocess.run(
        ["tshark", "-r", str(path), "-o", "tls.keylog_file:", "-d", "tcp.port==8443,tls", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines()]


def test_clients_saw_what_the_capture_should_show(captured: Captured) -> None:
    assert "tls_resumed: false" in captured.curl, captured.curl
    assert "tls_resumed: false" in captured.curl6, captured.curl6
    full_id, resumed_id, full_ticket, resumed_ticket = captured.clients
    assert "New, TLSv1.2" in full_id and "Reused, TLSv1.2" in resumed_id
    assert "New, TLSv1.2" in full_ticket and "Reused, TLSv1.2" in resumed_ticket
    assert "TLS session ticket:" in full_ticket


@pytest.mark.parametrize("which", ["config_file", "live_file"])
def test_tshark_decrypts_http_with_no_key_file(captured: Captured, which: str) -> None:
    path: Path = getattr(captured, which)
    rows = tshark(
        path, "-Y", "http", "-T", "fields", "-e", "http.request.uri", "-e", "http.response.code"
    )
    uris = [r[0] for r in rows if r[0]]
    codes = [r[1] for r in rows if len(r) > 1 and r[1]]
    assert uris == ["/curl", "/full-id", "/resumed-id", "/full-ticket", "/resumed-ticket", "/v6"]
    assert codes == ["200"] * 6
    # without the embedded secrets nothing decrypts: the DSBs are what tshark used
    bare = path.with_name(f"bare-{path.name}")
    subprocess.run(["editcap", "--discard-all-secrets", str(path), str(bare)], check=True)
    assert tshark(bare, "-Y", "http") == []
    cap = read_pcapng(path)
    assert len(cap.secrets) >= 1
    lines = b"".join(data for _, data in cap.secrets).decode().splitlines()
    assert len(lines) == 6 and all(ln.startswith("CLIENT_RANDOM ") for ln in lines)


def test_session_ids_and_tickets_where_the_seed_article_shows_them(captured: Captured) -> None:
    hellos = tshark(
        captured.config_file,
        "-Y",
        "tls.handshake.type == 2 && ip",
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
        "-e",
        "tls.handshake.session_id",
    )
    assert [h[0] for h in hellos] == ["443", "443", "443", "8443", "8443"]
    curl_id, full_id, resumed_id, full_ticket, resumed_ticket = (h[1] for h in hellos)
    # stateful: a fresh 32-byte session ID, echoed on resumption
    assert len(full_id) == 64 and resumed_id == full_id and curl_id not in ("", full_id)
    # stateless: the full handshake's ServerHello carries an empty session ID...
    assert full_ticket == ""
    # ...and the resumption by ticket echoes the client's session ID (RFC 5077 3.4)
    assert len(resumed_ticket) == 64
    tickets = tshark(
        captured.config_file,
        "-Y",
        "tls.handshake.type == 4",
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
        "-e",
        "tls.handshake.session_ticket_length",
    )
    assert [t[0] for t in tickets] == ["8443"] and int(tickets[0][1]) > 0
    offered = tshark(
        captured.config_file,
        "-Y",
        "tls.handshake.type == 1 && tcp.dstport == 8443",
        "-T",
        "fields",
        "-e",
        "tls.handshake.session_id",
        "-e",
        "tls.handshake.extension.type",
    )
    # the second ClientHello offers its ticket (session_ticket extension, type 35) and an ID
    assert len(offered) == 2 and "35" in offered[1][1].split(",")
    assert offered[1][0] == resumed_ticket


def test_server_hellos_carry_the_verdicts(captured: Captured) -> None:
    rows = tshark(
        captured.config_file,
        "-Y",
        "frame.comment",
        "-T",
        "fields",
        "-e",
        "tls.handshake.type",
        "-e",
        "frame.comment",
    )
    assert all(r[0].split(",")[0] == "2" for r in rows)  # only ServerHello frames
    notes = [r[1] for r in rows]
    assert len(notes) == 6
    assert notes[0].startswith("full handshake: reason nothing_offered, offered none")
    assert notes[1].startswith("full handshake: reason nothing_offered, offered none")
    assert notes[2].startswith("abbreviated handshake: resumed by session ID, session ID ")
    assert notes[3].startswith("full handshake: reason nothing_offered, offered none, new ticket")
    assert notes[4].startswith("abbreviated handshake: resumed by ticket, key ")
    assert notes[5].startswith("full handshake: reason nothing_offered")  # over IPv6


def test_classic_pcap_beside_it_has_the_same_frames(captured: Captured) -> None:
    classic = read_pcap(Path(f"{captured.config_file}.pcap"))
    assert [f for _, f in classic] == [p.data for p in read_pcapng(captured.config_file).packets]


def test_live_capture_status(captured: Captured) -> None:
    assert captured.flushed_live
    assert captured.live_started["path"] == str(captured.live_file)
    assert captured.live_started["active"] and captured.live_started["format"] == "pcapng"
    by_path = {c["path"]: c for c in captured.live_status["captures"]}
    live = by_path[str(captured.live_file)]
    assert live["counters"]["capture.frames"] > 20 and live["counters"]["capture.secrets"] == 6
    assert live["counters"].get("capture.verdicts_missed", 0) == 0
    assert read_pcapng(captured.live_file).interfaces == [(1, 9)]
