"""The control channel end to end: real OpenSSL clients through the TAP, profile changes made live
with ``nf ctl`` (tickets off->on, two rotations, key erasure, flush, cache shrink), every handshake
seen by ``nf record`` with contiguous ``seq``, and ``nf report`` on that file."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from nf.collectors import RecordFile
from tests.e2e.lab import NF, Lab, lab_nf

TLS_VS = """
[profiles.clientssl]
cert = "certs/rsa.pem"
key = "certs/rsa.key"
lab_certs = true
cache_size = 100

[[virtual_servers]]
name = "vs_tls"
port = 443
chain = ["tls:clientssl", "http"]
"""


class Rig:
    def __init__(self, lab: Lab, record: Path) -> None:
        self.lab = lab
        self.record = record
        self.seen = 0

    def ctl(self, op: str, *args: str) -> dict[str, Any]:
        r = self.lab.nf("ctl", "--json", "--endpoint", str(self.lab.control), op, *args)
        assert r.returncode == 0, r.stderr + r.stdout
        reply: dict[str, Any] = json.loads(r.stdout)
        return reply["result"]

    def handshakes(self) -> list[dict[str, Any]]:
        return [e for t, e in RecordFile(self.record) if t == "tls.handshake"]

    def connect(self, sess_in: Path | None = None, sess_out: Path | None = None) -> dict[str, Any]:
        """One OpenSSL handshake; returns its tls.handshake event (as recorded) plus the
        client's own verdict under ``client``."""
        argv = ["openssl", "s_client", "-connect", "192.0.2.10:443", "-tls1_2"]
        if sess_in is not None:
            argv += ["-sess_in", str(sess_in)]
        if sess_out is not None:
            argv += ["-sess_out", str(sess_out)]
        r = self.lab.ns(argv, timeout=30, input="")
        assert "CONNECTED" in r.stdout, r.stdout + r.stderr
        verdict = "reused" if "Reused, TLSv1.2" in r.stdout else "new"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = self.handshakes()
            if len(events) > self.seen:
                self.seen += 1
                assert len(events) == self.seen, "one tls.handshake event per handshake"
                return {**events[-1], "client": verdict}
            time.sleep(0.05)
        raise AssertionError("the handshake event never reached the recorder")


def test_live_profile_changes_seen_by_clients_and_recorder(tmp_path: Path) -> None:
    with lab_nf(tmp_path, TLS_VS, control=True) as lab:
        record = tmp_path / "events.rec"
        rec = subprocess.Popen(
            [
                *NF,
                "record",
                "-q",
                "--endpoint",
                str(lab.events),
                "-o",
                str(record),
                "--duration",
                "120",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            rig = Rig(lab, record)
            # the recorder is subscribed once it sees events: nudge with no-op-free changes
            deadline = time.monotonic() + 15
            size = 100
            while time.monotonic() < deadline and not (record.exists() and record.stat().st_size):
                size = 101 if size == 100 else 100
                rig.ctl("tls.profile.set", "profile=clientssl", f"cache_size={size}")
                time.sleep(0.1)
            assert record.stat().st_size > 0
            rig.ctl("tls.profile.set", "profile=clientssl", "cache_size=100")
            s1, s3, s4, t1, t2 = (tmp_path / n for n in ("s1", "s3", "s4", "t1", "t2"))

            h = rig.connect(sess_out=s1)
            assert (h["outcome"], h["reason"], h["client"]) == ("full", "nothing_offered", "new")
            h = rig.connect(sess_in=s1)
            assert (h["outcome"], h["method"], h["client"]) == ("resumed", "session_id", "reused")

            # flush: the next resumption attempt is a cache miss
            assert rig.ctl("tls.sessions.flush", "profile=clientssl")["flushed"] == 1
            h = rig.connect(sess_in=s1, sess_out=s3)
            assert (h["outcome"], h["reason"], h["client"]) == ("full", "cache_miss", "new")

            # shrink the cache to 1: the least recently used session is evicted
            rig.connect(sess_out=s4)
            listed = rig.ctl("tls.sessions.list", "profile=clientssl")
            assert listed["total"] == 2
            rig.ctl("tls.profile.set", "profile=clientssl", "cache_size=1")
            h = rig.connect(sess_in=s3)
            assert (h["reason"], h["client"]) == ("cache_evicted", "new")

            # tickets off -> on, live: the next handshake gets a ticket, the one after resumes by it
            assert h["tickets_issued"] == 0
            rig.ctl("tls.profile.set", "profile=clientssl", "session_ticket=true", "cache_size=100")
            h = rig.connect(sess_out=t1)
            assert h["outcome"] == "full" and h["tickets_issued"] == 1
            k0 = h["ticket_key"]
            h = rig.connect(sess_in=t1)
            assert (h["outcome"], h["method"], h["client"]) == ("resumed", "ticket", "reused")

            # two rotations: the old ticket still resumes and is re-issued under the new key
            k1 = rig.ctl("tls.tickets.rotate", "profile=clientssl")["current"]
            k2 = rig.ctl("tls.tickets.rotate", "profile=clientssl")["current"]
            names = [k["name"] for k in rig.ctl("tls.tickets.list", "profile=clientssl")["keys"]]
            assert names == [k2, k1, k0]
            h = rig.connect(sess_in=t1, sess_out=t2)
            assert (h["method"], h["client"], h["tickets_issued"]) == ("ticket", "reused", 1)

            # once its key is erased, the old ticket fails with ticket_unknown_key
            rig.ctl(
                "tls.profile.set",
                "profile=clientssl",
                "ticket_key_rotation=1",
                "session_ticket_timeout=1",
            )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                keys = rig.ctl("tls.tickets.list", "profile=clientssl")["keys"]
                if k0 not in [k["name"] for k in keys]:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"key {k0} never erased")
            h = rig.connect(sess_in=t1)
            assert (h["outcome"], h["reason"], h["client"]) == ("full", "ticket_unknown_key", "new")
        finally:
            if rec.poll() is None:
                rec.send_signal(signal.SIGINT)
            _, err = rec.communicate(timeout=15)
        assert rec.returncode == 0, err

        records = list(RecordFile(record))
        seqs = [e["seq"] for _, e in records]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (
            "a gap: the recorder missed events"
        )
        assert len({e["instance"] for _, e in records}) == 1
        topics = [t for t, _ in records]
        assert "tls.cache" in topics and "tls.tickets" in topics and "nf.profile" in topics

        r = lab.nf("report", "--json", str(record))
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        hs = report["handshakes"]
        assert (hs["total"], hs["full"], hs["resumed"], hs["failed"]) == (9, 6, 3, 0)
        assert report["by_method"]["ticket"]["resumed"] == 2
        assert report["by_method"]["session_id"]["resumed"] == 1
        reasons = {r["reason"]: r["count"] for r in report["reasons"]}
        assert reasons == {
            "resumed": 3,
            "nothing_offered": 3,
            "cache_miss": 1,
            "cache_evicted": 1,
            "ticket_unknown_key": 1,
        }
        assert report["cache"]["flushed"] == 1 and report["cache"]["evicted"] >= 1
        assert report["missed_events"] == 0
        assert report["cost"]["full"]["duration_us"]["n"] == 6
        # issued: the first ticket, its re-issue after rotation, a fresh one after the failure
        assert sum(v["issued"] for v in report["tickets"].values()) == 3
