"""``nf bench`` against a real lab (root): the icmp sub-benchmark end to end in a few seconds,
and the full run, which is a benchmark (``pytest -m benchmark``), not part of ``make test``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nf.bench.lab import can_run_labs
from nf.cli import main

needs_lab = pytest.mark.skipif(can_run_labs() is not None, reason=str(can_run_labs()))


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return {line.split()[0] for line in out.stdout.splitlines() if line.startswith("nfb")}


def _tag(log: str) -> str:
    """The lab's tag from the ``nf bench: lab nfb-XXXXXX`` progress line."""
    m = re.search(r"nf bench: lab nfb-([0-9a-f]+)", log)
    assert m is not None, log
    return m.group(1)


@needs_lab
@pytest.mark.e2e
def test_icmp_quick_through_the_tap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "icmp.json"
    assert main(["bench", "icmp", "--quick", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["reference"] for r in rows} == {"struct floor", "kernel addr"}
    for row in rows:
        assert row["rounds"] == 3 and all(v > 0 for v in row["ours"] + row["ref"])
    tag = _tag(capsys.readouterr().err)
    assert not _namespaces() & {f"nfb-{tag}", f"nfbf-{tag}"}  # lab and floor removed


@needs_lab
@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_full_bench(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert all(r["rounds"] >= 3 for r in data["rows"])
    print(json.dumps(data["rows"], indent=1))


@needs_lab
@pytest.mark.benchmark  # ~20 s of handshakes: not in make test
@pytest.mark.timeout(240)
def test_stalled_subscriber_run_really_stalls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without nginx the handshake sub-benchmark still runs its stalled-subscriber case, and the
    NF dropped events for the subscriber during the measured runs."""
    monkeypatch.setattr("nf.bench.runner.nginx_missing", lambda: "pretend nginx is missing")
    out = tmp_path / "hs.json"
    assert main(["bench", "handshake", "--quick", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["info"]["nginx"] == "pretend nginx is missing"
    (row,) = data["rows"]
    assert row["case"] == "full_ecdsa+stalled_sub" and row["rounds"] == 3
    assert all(v > 0 for v in row["ours"] + row["ref"])
    dropped = int(row["note"].split("; ")[1].split()[0])
    assert dropped > 0


@needs_lab
@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_sigterm_mid_run_removes_the_lab() -> None:
    """``nf bench`` stopped by SIGTERM while its lab runs exits 130 and leaves no namespace."""
    import signal
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "nf", "bench", "icmp", "--rounds", "50"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ours: set[str] = set()
    said = ""
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "nf bench: icmp ..." or the lab line
        while line and not line.startswith("nf bench: lab "):
            line = proc.stderr.readline()
        tag = _tag(line)
        workdir = Path(line.split("(workdir ")[1].split(",")[0])
        ours = {f"nfb-{tag}", f"nfbf-{tag}"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ours <= _namespaces():
            time.sleep(0.1)  # the lab and the floor's namespace exist: the run is under way
        assert ours <= _namespaces()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        said = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The bench stops and waits for its children before it exits (none is started where an
    # interrupt could orphan it), so nothing of the lab is left once it has returned.
    assert not _namespaces() & ours, said
    assert (workdir / "nf.log").exists()  # an interrupted run keeps its logs
    shutil.rmtree(workdir)
