"""``nf bench``: result arithmetic, the parsers of the tools' outputs, /proc accounting, the nginx
configuration, and a ``--quick`` smoke run of the in-process sub-benchmarks through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nf.bench import Plan
from nf.bench.figures import Report, Row, Spread
from nf.bench.handshake import ReadingSubscriber, STimeRun, _children_cpu, parse_s_time
from nf.bench.icmp import parse_ping
from nf.bench.lab import CERT_DIR, LabError
from nf.bench.nginx import nginx_missing, render, write_config
from nf.bench.procs import (
    cpu_seconds,
    descendants,
    die_with_parent,
    parse_stat,
    rss_bytes,
    signals_deferred,
)
from nf.cli import main

S_TIME_NEW = (
    "Collecting connection statistics for 1 seconds\n"
    "*****\n\n"
    "5 connections in 0.01s; 500.00 connections/user sec, bytes read 0\n"
    "5 connections in 2 real seconds, 0 bytes read per connection\n"
)
S_TIME_REUSE = S_TIME_NEW.replace("*****", "rrr*r")
PING = (
    "PING 192.0.2.10 (192.0.2.10) 56(84) bytes of data.\n\n--- 192.0.2.10 ping statistics ---\n"
    "2000 packets transmitted, 1998 received, 0.1% packet loss, time 125ms\n"
    "rtt min/avg/max/mdev = 0.041/0.059/0.251/0.012 ms, ipg/ewma 0.062/0.057 ms\n"
)


def test_spread_and_ratios_per_round() -> None:
    row = Row("x", "case", "conn/s", "nginx")
    for ours, ref in ((10.0, 20.0), (30.0, 20.0), (20.0, 20.0)):
        row.add(ours, ref)
    assert row.ratios == [0.5, 1.5, 1.0]
    assert row.ratio() == Spread(0.5, 1.0, 1.5)
    nan = Spread.of([])
    assert nan.median != nan.median


@pytest.mark.parametrize(
    ("better", "target", "ratios", "meets"),
    [
        ("higher", 1.0, [0.9, 1.1, 1.2], True),
        ("higher", 1.0, [0.9, 0.95, 1.2], False),
        ("lower", 1.5, [1.4, 1.6, 1.5], True),
        ("lower", 1.5, [1.6, 1.6, 1.4], False),
        ("lower", None, [9.0, 9.0, 9.0], None),
    ],
)
def test_target_is_judged_on_the_median_in_the_right_direction(
    better: str, target: float | None, ratios: list[float], meets: bool | None
) -> None:
    row = Row("x", "c", "u", "r", better=better, target=target)
    for r in ratios:
        row.add(r, 1.0)
    assert row.meets_target() is meets


def test_report_table_and_json(tmp_path: Path) -> None:
    report = Report()
    row = report.row("tls", "full", "µs", "floor", better="lower", target=1.5)
    for ours in (300.0, 310.0, 320.0):
        row.add(ours, 100.0)
    report.row("icmp", "ping", "rtt/s", "floor")
    report.skipped["tcp"] = "needs root"
    table = report.table()
    assert "3.00/3.10/3.20" in table and "≤1.5 MISS" in table
    assert "(no samples)" in table and "tcp       skipped: needs root" in table
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["rows"][0]["ratio"] == {"min": 3.0, "median": 3.1, "max": 3.2}
    assert data["rows"][0]["meets_target"] is False and data["rows"][0]["rounds"] == 3
    assert data["skipped"] == {"tcp": "needs root"}


def test_parse_s_time_counts_connections_and_reuse() -> None:
    assert parse_s_time(S_TIME_NEW) == (5, 0)
    assert parse_s_time(S_TIME_REUSE) == (5, 4)
    with pytest.raises(LabError):
        parse_s_time("connect: Connection refused\n")


def test_parse_ping_summary() -> None:
    assert parse_ping(PING) == (2000, 1998, 0.125)
    with pytest.raises(LabError):
        parse_ping("ping: connect: Network is unreachable\n")


def test_client_cpu_counts_the_waited_for_client() -> None:
    """The srv+client rows add the s_time run's own CPU (a finished, waited-for child)."""
    before = _children_cpu()
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass"
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=60)
    assert _children_cpu() - before >= 0.25
    run = STimeRun(connections=100, reused=0, wall_s=1.0, cpu_s=0.02, client_cpu_s=0.03)
    assert run.cpu_us == pytest.approx(200.0)
    assert run.total_cpu_us == pytest.approx(500.0)
    assert STimeRun(0, 0, 1.0, 0.1, 0.1).total_cpu_us == float("inf")


def test_parse_stat_survives_odd_command_names() -> None:
    fields = " ".join(str(i) for i in range(3, 53))  # field 3 .. 52; utime=14, stime=15
    assert parse_stat(f"123 (a) b) c) {fields}") == (14, 15)


def test_cpu_of_a_process_tree_and_rss() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\ninput()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        assert child.pid in descendants(__import__("os").getpid())
        deadline = time.monotonic() + 10
        while cpu_seconds([child.pid]) < 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_seconds([child.pid]) >= 0.2
        assert cpu_seconds([2**22 + 7]) == 0.0  # a vanished pid counts nothing
    finally:
        child.kill()
        child.wait()
    assert rss_bytes() > 1_000_000


def test_an_interrupt_during_a_start_lands_after_the_child_is_recorded() -> None:
    """SIGTERM raised inside ``signals_deferred`` unwinds only once the block has recorded its
    child (an orphaned floor once re-created a deleted namespace), and the child itself does
    not inherit the blocked signals."""
    import os
    import signal

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    started: list[subprocess.Popen[bytes]] = []
    try:
        with pytest.raises(KeyboardInterrupt), signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            started.append(
                subprocess.Popen(
                    ["sleep", "30"], stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
                )
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(started) == 1
    child = started[0]
    try:
        status = Path(f"/proc/{child.pid}/status").read_text()
        blocked = int(
            next(x for x in status.splitlines() if x.startswith("SigBlk:")).split()[1], 16
        )
        assert not blocked & (1 << (signal.SIGTERM - 1))
        child.terminate()  # a blocked SIGTERM would leave it sleeping
        assert child.wait(timeout=5) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_nginx_config_matches_tapnf_profiles(tmp_path: Path) -> None:
    conf = render(tmp_path, "198.51.100.2", 7007)
    assert "worker_processes 1;" in conf and "ssl_protocols TLSv1.2;" in conf
    assert conf.count("ssl_session_cache shared:") == 2
    assert "listen 198.51.100.2:443 ssl; ssl_session_tickets off;" in conf
    assert "listen 198.51.100.2:8443 ssl; ssl_session_tickets on;" in conf
    assert f"ssl_certificate {CERT_DIR / 'ecdsa'}.pem;" in conf
    assert f"ssl_certificate {CERT_DIR / 'rsa'}.pem;" in conf
    assert "proxy_pass 198.51.100.2:7007;" in conf


@pytest.mark.skipif(nginx_missing() is not None, reason="nginx with the stream module missing")
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    from plugins.tls.labcerts import ensure_lab_certs

    ensure_lab_certs(CERT_DIR)
    write_config(tmp_path / "nginx.conf", tmp_path, "127.0.0.1", 7007)
    r = subprocess.run(
        ["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr


def test_quick_plan_is_small_but_keeps_three_rounds_and_100k_sessions() -> None:
    q, full = Plan.quick(), Plan()
    assert q.rounds >= 3 and full.rounds >= 3
    assert q.cache_sessions == full.cache_sessions == 100_000
    assert q.tls_handshakes < full.tls_handshakes and q.tcp_bytes < full.tcp_bytes


def test_rounds_below_three_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "tls", "--rounds", "2"]) == 2
    assert main(["bench", "nosuch"]) == 2


def test_quick_smoke_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``nf bench tls cache --quick``: every row has three rounds of real, positive samples."""
    out = tmp_path / "bench.json"
    assert main(["bench", "tls", "cache", "--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "full_ecdsa_p256" in printed and "rss/session" in printed
    data = json.loads(out.read_text())
    cases = {(r["bench"], r["case"]) for r in data["rows"]}
    assert {("tls", c) for c in ("full_ecdsa_p256", "resumed_ticket")} <= cases
    for row in data["rows"]:
        assert row["rounds"] == 3, row
        assert all(v > 0 for v in row["ours"] + row["ref"]), row
        assert row["ratio"]["min"] <= row["ratio"]["median"] <= row["ratio"]["max"]
    tls = {r["case"]: r for r in data["rows"] if r["bench"] == "tls"}
    # The server does strictly more than the floor it is compared with.
    assert all(r["ratio"]["median"] > 1.0 for r in tls.values())
    mem = next(r for r in data["rows"] if r["bench"] == "cache" and r["unit"] == "bytes")
    assert 50 < mem["ours_median"] < 2000  # a session is ~80 bytes of state plus its ID and slot


@pytest.mark.skipif(shutil.which("ping") is None, reason="ping missing")
def test_lab_subs_are_skipped_with_a_reason_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("nf.bench.runner.can_run_labs", lambda: "needs root (test)")
    assert main(["bench", "icmp", "--quick"]) == 0
    assert "icmp      skipped: needs root (test)" in capsys.readouterr().out


def test_rounds_option_overrides_the_plan(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    assert main(["bench", "tls", "--quick", "--rounds", "4", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["info"]["plan"]["rounds"] == 4
    assert all(r["rounds"] == 4 for r in data["rows"])


def test_profile_summary_by_component(tmp_path: Path) -> None:
    """benchmarks/profile_lab.py: collapsed py-spy stacks -> shares by component and function."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "profile_lab", Path(__file__).resolve().parents[2] / "benchmarks" / "profile_lab.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    raw = tmp_path / "raw.txt"
    loop = "run (nf/loop.py:83)"
    raw.write_text(
        f"{loop};receive_tcp (pipeline/tcp/stack.py:210);parse (pipeline/wire/tcp.py:92) 6\n"
        f"{loop};poll_at (nf/runtime.py:237) 3\n"
        f"{loop};_handle (plugins/tls/server.py:255) 1\n"
    )
    text = mod.summarise(raw)
    assert text.startswith("10 samples")
    comps = text.split("-- self --")[0]
    assert " 60.0%  tcp" in comps and " 30.0%  timers" in comps and " 10.0%  tls engine" in comps


def test_reading_subscriber_takes_every_event_and_stops(tmp_path: Path) -> None:
    """The +reading_sub case's collector: a C proxy that keeps up (no drops past the high-water
    mark) and stops when closed."""
    import zmq

    from nf.exporter import ZmqEventBus

    ctx: zmq.Context[Any] = zmq.Context()
    endpoint = f"ipc://{tmp_path}/ev.sock"
    bus = ZmqEventBus(ctx, endpoint, "bench", lambda: 0, hwm=50)
    reader = ReadingSubscriber(endpoint)
    try:
        deadline = time.monotonic() + 5
        while bus.subscriber_count() < 1 and time.monotonic() < deadline:
            bus.socket.poll(20)
        for i in range(2000):
            bus.emit("tcp.flow", {"conn": i})
            if i % 25 == 0:
                time.sleep(0.002)  # a pace a reader keeps up with; a stalled one would not
        assert bus.counters["events.published"] == 2000
        assert bus.counters["events.dropped"] == 0
    finally:
        reader.close()
        bus.close()
        ctx.term()
    assert not reader._thread.is_alive()
