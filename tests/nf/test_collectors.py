"""Collectors end to end over ipc://: synthetic events published by the real exporter, recorded by
``nf record`` (a separate process, stopped by a limit or by Ctrl-C), analysed by ``nf report``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from nf.cli import main
from nf.collectors import (
    GapTracker,
    Receiver,
    RecordFile,
    RecordWriter,
    StopFlag,
    subscriber,
    table_row,
)
from nf.exporter import ZmqEventBus
from nf.report import analyse, median, percentile

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def handshakes() -> list[tuple[str, dict[str, Any]]]:
    """A scripted session: 4 full, 3 ticket resumptions, 2 session-ID ones, 2 failed attempts."""
    ev: list[tuple[str, dict[str, Any]]] = []

    def hs(**f: Any) -> None:
        base = {
            "offered": "none",
            "outcome": "full",
            "method": None,
            "reason": "nothing_offered",
            "tickets_issued": 0,
            "ticket_key": None,
            "duration_us": 2000,
            "cpu_us": 1500,
        }
        ev.append(("tls.handshake", {**base, **f}))

    for d in (2000, 2200, 2400, 2600):
        hs(duration_us=d, cpu_us=d - 500, tickets_issued=1, ticket_key="k1")
    for d in (300, 400, 500):
        hs(
            offered="ticket",
            outcome="resumed",
            method="ticket",
            reason="resumed",
            ticket_key="k1",
            duration_us=d,
            cpu_us=d // 2,
        )
    for d in (600, 700):
        hs(
            offered="session_id",
            outcome="resumed",
            method="session_id",
            reason="resumed",
            duration_us=d,
            cpu_us=d // 2,
        )
    hs(offered="ticket", reason="ticket_unknown_key", tickets_issued=1, ticket_key="k2")
    hs(offered="session_id", reason="cache_miss")
    ev.append(
        ("tls.cache", {"profile": "p", "action": "evicted", "session_id": "aa", "age_s": 1.0})
    )
    ev.append(
        ("tls.cache", {"profile": "p", "action": "flushed", "session_id": "bb", "age_s": 2.0})
    )
    ev.append(("tls.tickets", {"profile": "p", "action": "installed", "key": "k2"}))
    return ev


def _record_proc(endpoint: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nf",
            "record",
            "-q",
            "--endpoint",
            endpoint,
            "-o",
            str(out),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_record_then_report_round_trip(
    ctx: zmq.Context[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = f"ipc://{tmp_path}/events.sock"
    bus = ZmqEventBus(ctx, endpoint, "lab1", lambda: 7)
    out = tmp_path / "run.rec"
    events = handshakes()
    proc = _record_proc(endpoint, out, "--count", str(len(events)), "--duration", "20")
    try:
        assert _wait_for(lambda: bus.subscriber_count() >= 1), (
            proc.stderr.read() if proc.stderr else ""
        )
        for topic, fields in events:
            bus.emit(topic, fields)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        bus.close()
    assert proc.returncode == 0, err
    assert f"{len(events)} event(s)" in err and "0 missed" in err
    records = list(RecordFile(out))
    assert [r[0] for r in records] == [t for t, _ in events]
    assert [e["seq"] for _, e in records] == list(range(1, len(events) + 1))
    assert all(e["instance"] == "lab1" and e["gen"] == 7 for _, e in records)

    assert main(["report", "--json", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    h = report["handshakes"]
    assert (h["total"], h["full"], h["resumed"], h["failed"]) == (11, 6, 5, 0)
    assert h["resumption_rate"] == round(5 / 11, 4)
    assert h["attempted"] == 7 and h["attempt_success_rate"] == round(5 / 7, 4)
    assert report["by_offer"]["ticket"] == {"offered": 4, "resumed": 3, "rate": 0.75}
    assert report["by_method"] == {
        "ticket": {"resumed": 3, "share": round(3 / 11, 4)},
        "session_id": {"resumed": 2, "share": round(2 / 11, 4)},
    }
    assert report["reasons"][0] == {"reason": "resumed", "count": 5}
    assert {r["reason"] for r in report["reasons"]} == {
        "resumed",
        "nothing_offered",
        "ticket_unknown_key",
        "cache_miss",
    }
    assert report["cost"]["resumed"]["duration_us"] == {"n": 5, "median": 500.0, "p95": 700.0}
    assert report["cost"]["full"]["duration_us"]["n"] == 6
    assert report["tickets"] == {
        "k1": {"issued": 4, "accepted": 3},
        "k2": {"issued": 1, "accepted": 0},
    }
    assert report["cache"] == {"evicted": 1, "expired": 0, "flushed": 1}
    assert report["missed_events"] == 0 and report["file"]["torn_tail"] is False

    assert main(["report", str(out)]) == 0
    table = capsys.readouterr().out
    assert "resumption rate: 45.5% overall, 71.4% of 7 resumption attempts" in table
    assert "ticket_unknown_key" in table and "cache: evicted 1  expired 0  flushed 1" in table


def test_record_is_ctrl_c_safe(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/events.sock"
    bus = ZmqEventBus(ctx, endpoint, "lab1", lambda: 0)
    out = tmp_path / "cut.rec"
    proc = _record_proc(endpoint, out, "--duration", "30")
    try:
        assert _wait_for(lambda: bus.subscriber_count() >= 1)
        for i in range(200):
            bus.emit("tls.handshake", {"conn": i, "history": "csxkgift" * 20})
        assert _wait_for(lambda: out.exists() and len(list(RecordFile(out))) == 200)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        bus.close()
    assert proc.returncode == 0, err
    reader = RecordFile(out)
    assert len(list(reader)) == 200 and not reader.torn_tail


def test_reader_ignores_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "torn.rec"
    w = RecordWriter(path)
    w.write("a", {"seq": 1})
    w.write("b", {"seq": 2})
    w.close()
    whole = path.read_bytes()
    path.write_bytes(whole + msgpack.packb(["c", {"seq": 3, "x": "y" * 50}])[:-10])
    reader = RecordFile(path)
    assert [t for t, _ in reader] == ["a", "b"]
    assert reader.torn_tail


def test_report_on_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_receiver_limits_and_gaps(ctx: zmq.Context[Any]) -> None:
    bus = ZmqEventBus(ctx, "inproc://rx", "i", lambda: 0)
    sock = subscriber(ctx, "inproc://rx", ["tls."])
    other = subscriber(ctx, "inproc://rx", ["tcp."])  # another collector's topic
    try:
        assert _wait_for(lambda: bus.subscriber_count() >= 2)
        bus.emit("tls.handshake", {"n": 1})
        bus.emit("tcp.flow", {"n": 2})  # sent to the other one only: a gap of one for this one
        bus.emit("nf.stats", {"n": 2.5})  # nobody subscribed: not sent, no seq number, no gap
        bus.emit("tls.cache", {"n": 3})
        bus.emit("tls.cache", {"n": 4})
        rx = Receiver(sock, StopFlag(), count=3, duration=5.0)
        got = list(rx)
        assert [e["n"] for _, e in got] == [1, 3, 4]
        gaps = GapTracker()
        assert [gaps.see(e) for _, e in got] == [0, 1, 0]
        t0 = time.monotonic()
        assert list(Receiver(sock, StopFlag(), duration=0.3)) == []
        assert time.monotonic() - t0 < 2.0
    finally:
        sock.close()
        other.close()
        bus.close()


def test_events_json_lines(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/ev.sock"
    bus = ZmqEventBus(ctx, endpoint, "lab1", lambda: 0)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nf",
            "events",
            "--json",
            "--endpoint",
            endpoint,
            "--count",
            "2",
            "--duration",
            "20",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: bus.subscriber_count() >= 1)
        bus.emit("tls.handshake", {"conn": 1, "session_id": b"\x01\x02"})
        bus.emit("nf.profile", {"profile": "p", "changed": ["cache_size"]})
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        bus.close()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["topic"] for line in lines] == ["tls.handshake", "nf.profile"]
    assert lines[0]["session_id"] == "0102" and lines[0]["seq"] == 1


def test_table_row() -> None:
    row = table_row(
        "tls.handshake",
        {"ts": 0.0, "seq": 5, "conn": 3, "outcome": "resumed", "method": "ticket", "sni": None},
    )
    assert row.split()[1:] == ["5", "tls.handshake", "conn=3", "outcome=resumed", "method=ticket"]
    assert "counters" not in table_row("nf.stats", {"seq": 1, "counters": {"a": 1}})


def test_percentiles() -> None:
    assert percentile([], 95) is None and median([]) is None
    assert percentile(list(range(1, 101)), 95) == 95
    assert median([1, 3, 2, 4]) == 2.5


def test_analyse_counts_gaps() -> None:
    report = analyse([("x", {"seq": 1, "instance": "a"}), ("x", {"seq": 4, "instance": "a"})])
    assert report["missed_events"] == 2


def test_keys_curve_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "curve", "--out", str(tmp_path / "k")]) == 0
    assert (tmp_path / "k" / "authorized" / "client.key").exists()
    assert "curve_secret_key" in capsys.readouterr().out


def test_schema_doc_matches_generated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    generated = capsys.readouterr().out
    assert (ROOT / "docs" / "events.md").read_text() == generated, (
        "regenerate: nf schema > docs/events.md"
    )
    from pipeline.events import REASONS, SCHEMA

    for topic, fields in SCHEMA.items():
        assert f"## `{topic}`" in generated
        assert all(f"| `{name}` |" in generated for name in fields)
    assert all(f"`{r}`" in generated for r in REASONS)
