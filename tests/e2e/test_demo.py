"""`make demo`'s main job, in quick mode: every act shows the expected outcome, method and reason."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import msgpack


def test_demo_quick(tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    out = tmp_path / "demo-out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "nf",
            "demo",
            "--quick",
            "--out",
            str(out),
            "--netns",
            f"tnfdemo-{tag}",
            "--tap",
            f"tnfd{tag}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    assert "✘" not in text
    for act in ("Act 1", "Act 2", "Act 3", "Act 4"):
        assert f"== {act}" in text
    assert "10 of 10 checks passed" in text
    assert "reason=ticket_unknown_key" in text
    assert "method=session_id" in text and "method=ticket" in text
    # The events file is a msgpack stream nf report can read, with contiguous seq numbers.
    with open(out / "events.msgpack", "rb") as f:
        records = list(msgpack.Unpacker(f, raw=False))
    seqs = [ev["seq"] for _, ev in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    hs = [ev for topic, ev in records if topic == "tls.handshake"]
    assert len(hs) == 7 + 3 * 20 + 2
    # The capture opens decrypted in tshark with no key file: secrets and verdicts are inside.
    capture = out / "capture.pcapng"
    assert capture.stat().st_size > 10_000

    def tshark(*args: str) -> list[str]:
        r = subprocess.run(
            ["tshark", "-r", str(capture), "-o", "tls.keylog_file:", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    # Finished messages are encrypted: tshark shows them only with the embedded secrets.
    finished = tshark("-Y", "tls.handshake.type == 20", "-T", "fields", "-e", "frame.number")
    assert len(finished) >= 2 * len(hs) - 4
    notes = tshark("-Y", "frame.comment", "-T", "fields", "-e", "frame.comment")
    assert any(n.startswith("abbreviated handshake: resumed by ticket, key ") for n in notes)
    assert any(n.startswith("abbreviated handshake: resumed by session ID") for n in notes)
    assert any(n.startswith("full handshake: reason ticket_unknown_key") for n in notes)
    assert "CLIENT_RANDOM" in (out / "keylog.txt").read_text()
    r = subprocess.run(
        [sys.executable, "-m", "nf", "report", str(out / "events.msgpack")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "resumption rate" in r.stdout
    assert not Path(f"/var/run/netns/tnfdemo-{tag}").exists()
