"""The host stack against the real kernel: ping, neighbour discovery, bad frames, clean exit."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.e2e.lab import Lab, lab_nf

NF_MAC = "02:00:00:00:0a:10"

RAW_SEND = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
mac_nf = bytes.fromhex("02000000 0a10".replace(" ", ""))
src = s.getsockname()[4]
frames = [
    mac_nf + src + b"\\x08\\x00" + b"\\x45\\x00\\x00",            # IPv4 header cut short
    mac_nf + src + b"\\x08\\x00" + b"\\x46" + bytes(40),           # IHL past the data
    mac_nf + src + b"\\x08\\x06" + b"\\x00\\x01\\x08\\x00\\x06",      # truncated ARP
    mac_nf + src + b"\\x86\\xdd" + b"\\x60" + bytes(20),           # truncated IPv6
    b"\\xff" * 6 + src + b"\\x88\\xb5" + bytes(46),                # unknown ethertype
]
for f in frames:
    s.send(f)
"""


def final_counters(lab: Lab) -> dict[str, int]:
    m = re.search(r"^nf: counters (\{.*\})$", lab.drain_output(), re.M)
    assert m, lab.drain_output()
    counters: dict[str, int] = json.loads(m.group(1))
    return counters


def test_ping_neighbours_bad_frames_and_clean_exit(lab: Lab) -> None:
    r = lab.ns("ping -c 200 -i 0.005 -W 2 -q 192.0.2.10", timeout=60)
    assert " 0% packet loss" in r.stdout, r.stdout + r.stderr
    assert "200 received" in r.stdout
    r = lab.ns("ping -6 -c 50 -i 0.01 -W 2 -q 2001:db8::10", timeout=60)
    assert " 0% packet loss" in r.stdout, r.stdout + r.stderr

    neigh = lab.ns("ip neigh show").stdout
    assert re.search(rf"192\.0\.2\.10 .*lladdr {NF_MAC}", neigh), neigh
    assert re.search(rf"2001:db8::10 .*lladdr {NF_MAC}", neigh), neigh
    r = lab.ns(f"arping -c 2 -w 5 -I {lab.tap} 192.0.2.10", timeout=30)
    assert NF_MAC in r.stdout.lower(), r.stdout + r.stderr

    # Malformed frames neither stop the NF nor its answers; each is counted with a reason.
    r = lab.ns(["python3", "-c", RAW_SEND, lab.tap])
    assert r.returncode == 0, r.stderr
    r = lab.ns("ping -c 5 -i 0.05 -W 2 -q 192.0.2.10", timeout=30)
    assert " 0% packet loss" in r.stdout
    assert lab.alive()

    # A host that is not ours gets no answer (and the NF keeps going).
    r = lab.ns("ping -c 2 -i 0.1 -W 1 -q 192.0.2.99", timeout=30)
    assert " 0 received" in r.stdout


def test_sigterm_removes_namespace_and_device(tmp_path: Path) -> None:
    with lab_nf(tmp_path) as lab:
        assert os.path.exists(f"/var/run/netns/{lab.netns}")
        r = lab.ns(["python3", "-c", RAW_SEND, lab.tap])
        assert r.returncode == 0, r.stderr
        assert lab.ns("ping -c 3 -i 0.05 -W 2 -q 192.0.2.10").returncode == 0
        proc = lab.proc
        assert proc is not None
        proc.terminate()
        proc.wait(timeout=15)
        assert proc.returncode == 0
        assert proc.stdout is not None
        lab.output.append(proc.stdout.read())
        counters = final_counters(lab)
        drops = {k: v for k, v in counters.items() if k.startswith("drop.")}
        assert sum(drops.values()) >= 5, counters
        assert drops.get("drop.truncated", 0) >= 3, counters
        assert counters.get("icmp.echo_replied", 0) >= 3
    assert not os.path.exists(f"/var/run/netns/{lab.netns}")
    assert not os.path.exists(f"/sys/class/net/{lab.tap}")
