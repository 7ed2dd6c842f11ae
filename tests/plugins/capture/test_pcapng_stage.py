"""PcapngCaptureStage: the ServerHello frame gets its handshake verdict as a comment (frames held
in order until the verdict, bounded in time and size), key log lines land in a DSB ahead of the
frames they decrypt, and the ring/stop size limits are kept and counted."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from plugins.capture.pcapng import (
    DSB,
    EPB,
    PcapngCaptureStage,
    read_pcapng,
    server_hello_key,
    verdict_comment,
)

OUR, PEER = "02:00:00:00:0a:10", "02:00:00:00:0b:01"
HELLO = b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"  # handshake record: ServerHello (type 2)
LINE = "CLIENT_RANDOM " + "11" * 32 + " " + "22" * 48


def seg(
    payload: bytes = b"", *, out: bool = True, port: int = 40001, seq: int = 1000, v6: bool = False
) -> bytes:
    ip = (
        IPv6(src="2001:db8::10", dst="2001:db8::1") if v6 else IP(src="192.0.2.10", dst="192.0.2.1")
    )
    if not out:
        ip = IPv6(src=ip.dst, dst=ip.src) if v6 else IP(src=ip.dst, dst=ip.src)
    sport, dport = (443, port) if out else (port, 443)
    eth = Ether(src=OUR, dst=PEER) if out else Ether(src=PEER, dst=OUR)
    return raw(eth / ip / TCP(sport=sport, dport=dport, seq=seq, flags="PA") / payload)


def verdict(port: int = 40001, **kw: Any) -> dict[str, Any]:
    ev = {
        "conn": 7,
        "client": f"192.0.2.1:{port}",
        "vip": "192.0.2.10:443",
        "outcome": "full",
        "offered": "none",
        "method": None,
        "reason": "nothing_offered",
        "session_id": "",
        "tickets_issued": 1,
        "ticket_key": "3f2a" * 8,
        "alert": None,
    }
    ev.update(kw)
    return ev


def comments(path: Path) -> list[tuple[str, ...]]:
    return [p.comments for p in read_pcapng(path).packets]


def test_server_hello_key_recognises_only_server_hellos() -> None:
    assert server_hello_key(seg(HELLO)) == ("192.0.2.10:443", "192.0.2.1:40001", 1000)
    assert server_hello_key(seg(HELLO, v6=True)) == (
        "[2001:db8::10]:443",
        "[2001:db8::1]:40001",
        1000,
    )
    assert server_hello_key(seg(b"\x16\x03\x01\x00\x04\x01\x00\x00\x00")) is None  # ClientHello
    assert server_hello_key(seg(b"\x17\x03\x03\x00\x04abcd")) is None  # application data
    assert server_hello_key(seg()) is None
    frag = raw(Ether() / IP(src="192.0.2.10", dst="192.0.2.1", flags="MF") / TCP() / HELLO)
    assert server_hello_key(frag) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 100))
def test_server_hello_key_never_raises(data: bytes, cut: int) -> None:
    server_hello_key(data)
    server_hello_key(seg(HELLO)[:cut] + data)


def test_verdict_comments_say_what_happened() -> None:
    key = "3f2a" * 8
    assert verdict_comment(
        verdict(outcome="resumed", method="ticket", reason="resumed", session_id="ab" * 32)
    ) == (
        f"abbreviated handshake: resumed by ticket, key {key}, session ID {'ab' * 8}…, "
        "ticket re-issued, conn 7"
    )
    assert verdict_comment(
        verdict(outcome="resumed", method="session_id", tickets_issued=0, session_id="cd" * 32)
    ).startswith(f"abbreviated handshake: resumed by session ID, session ID {'cd' * 8}…")
    assert verdict_comment(verdict(reason="ticket_unknown_key", offered="ticket")) == (
        f"full handshake: reason ticket_unknown_key, offered ticket, new ticket, key {key}, conn 7"
    )
    assert verdict_comment(
        verdict(outcome="failed", reason="handshake_timeout", alert="handshake_failure")
    ) == ("handshake failed: reason handshake_timeout, alert handshake_failure, conn 7")


def test_server_hello_held_until_its_verdict_then_commented_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path, ts_offset=1_800_000_000.0, flush_frames=1)
    hello_in = seg(b"\x16\x03\x01client hello", out=False, seq=1)
    stage.on_frame(hello_in, "in", 10.0)
    stage.on_frame(seg(HELLO), "out", 10.001)
    stage.on_frame(seg(b"cke+ccs+fin", out=False, seq=2), "in", 10.002)
    stage.write_line(LINE)  # the secret is known while the client's Finished is held
    assert stage.held == 2
    assert [p.data for p in read_pcapng(path).packets] == [hello_in]
    stage.emit("tls.handshake", verdict())
    assert stage.held == 0
    stage.on_frame(seg(b"\x17\x03\x03 app data", seq=2000), "out", 10.003)
    stage.close()
    cap = read_pcapng(path)
    # the DSB comes before the ServerHello and the client's CCS/Finished it decrypts
    assert cap.blocks[2:] == [EPB, DSB, EPB, EPB, EPB]
    assert [p.direction for p in cap.packets] == ["in", "out", "in", "out"]
    assert comments(path) == [(), (verdict_comment(verdict()),), (), ()]
    assert [round(p.seconds - 1_800_000_000.0, 3) for p in cap.packets] == [
        10.0,
        10.001,
        10.002,
        10.003,
    ]
    assert stage.stats["capture.comments"] == 1 and stage.stats["capture.secrets"] == 1


def test_verdicts_for_interleaved_connections_release_in_capture_order(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path)
    stage.on_frame(seg(HELLO, port=1), "out", 1.0)
    stage.on_frame(seg(HELLO, port=2), "out", 1.1)
    stage.on_frame(seg(b"x", port=1, seq=9), "out", 1.2)
    stage.emit("tls.handshake", verdict(port=2, conn=2))
    assert stage.held == 3  # conn 2 has its verdict but waits behind conn 1's ServerHello
    stage.emit("tls.handshake", verdict(port=1, conn=1))
    assert stage.held == 0
    stage.emit("tls.handshake", verdict(port=3))  # no ServerHello seen for it
    stage.close()
    got = comments(path)
    assert got[0][0].endswith("conn 1") and got[1][0].endswith("conn 2") and got[2] == ()
    assert stage.stats["capture.verdicts_unmatched"] == 1


def test_missing_verdict_given_up_after_hold_timeout(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path, hold_timeout=2.0)
    stage.on_frame(seg(HELLO), "out", 1.0)
    stage.on_frame(seg(b"a", seq=5), "out", 2.0)
    assert stage.held == 2
    stage.on_frame(seg(b"b", seq=6), "out", 3.0)
    assert stage.held == 0
    stage.emit("tls.handshake", verdict())  # too late: counted, nothing rewritten
    stage.close()
    assert comments(path) == [(), (), ()]
    assert stage.stats["capture.verdicts_missed"] == 1
    assert stage.stats["capture.verdicts_unmatched"] == 1


def test_timer_gives_up_a_late_verdict_and_flushes_when_idle(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path, hold_timeout=2.0, flush_interval=1.0)
    assert stage.poll_at() is None
    stage.on_frame(seg(b"x", seq=1), "out", 10.0)
    assert stage.poll_at() == 11.0  # flush the written frame within flush_interval
    stage.on_frame(seg(HELLO), "out", 10.5)
    stage.handle_timer(11.0)
    assert len(read_pcapng(path).packets) == 1  # flushed; the ServerHello is still held
    assert stage.poll_at() == 12.5
    stage.handle_timer(12.4)
    assert stage.held == 1
    stage.handle_timer(12.5)
    assert stage.held == 0 and stage.stats["capture.verdicts_missed"] == 1
    # written and, a flush interval after the last flush, flushed at once
    assert len(read_pcapng(path).packets) == 2 and stage.poll_at() is None
    stage.close()


def test_hold_queue_bound_releases_oldest(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path, max_hold_frames=3)
    for i in range(5):
        stage.on_frame(seg(HELLO if i == 0 else b"x", seq=i), "out", 1.0)
    assert stage.held == 0  # the bound gave up on the ServerHello's verdict
    stage.on_frame(seg(HELLO, port=2), "out", 1.0)
    for i in range(2):
        stage.on_frame(seg(b"y", seq=100 + i), "out", 1.0)
    assert stage.held == 3  # at the bound, not over it
    stage.close()  # close writes what is held, giving up the last verdict
    assert len(read_pcapng(path).packets) == 8
    assert stage.stats["capture.verdicts_missed"] == 2


def test_retransmitted_server_hello_not_held_again(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path)
    stage.on_frame(seg(HELLO), "out", 1.0)
    stage.on_frame(seg(HELLO), "out", 1.2)  # retransmission while waiting
    stage.emit("tls.handshake", verdict())
    stage.on_frame(seg(HELLO), "out", 1.5)  # late retransmission: written at once
    assert stage.held == 0
    stage.on_frame(seg(HELLO, seq=777), "out", 60.0)  # a new connection on the same ports
    assert stage.held == 1
    stage.close()
    assert [bool(c) for c in comments(path)] == [True, False, False, False]


def test_without_comments_or_secrets_nothing_is_held(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path, comments=False, secrets=False)
    stage.on_frame(seg(HELLO), "out", 1.0)
    assert stage.held == 0
    stage.write_line(LINE)
    stage.emit("tls.handshake", verdict())
    stage.close()
    cap = read_pcapng(path)
    assert cap.secrets == [] and comments(path) == [()]


def test_secrets_only_still_hold_until_the_verdict(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path, comments=False)
    stage.on_frame(seg(HELLO), "out", 1.0)
    stage.on_frame(seg(b"fin", out=False, seq=3), "in", 1.1)
    stage.write_line(LINE)
    stage.emit("tls.handshake", verdict())
    stage.close()
    cap = read_pcapng(path)
    assert cap.blocks[2:] == [DSB, EPB, EPB] and comments(path) == [(), ()]


def test_bad_key_log_lines_refused(tmp_path: Path) -> None:
    stage = PcapngCaptureStage(tmp_path / "c.pcapng")
    stage.write_line("CLIENT_RANDOM a b\nINJECTED x y")
    stage.write_line("x" * 600)
    stage.write_line(LINE)
    stage.close()
    assert read_pcapng(tmp_path / "c.pcapng").secrets == [(0x544C534B, (LINE + "\n").encode())]
    assert stage.stats["capture.secrets_refused"] == 2


def test_one_file_stops_when_full_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path, max_bytes=4096)
    for i in range(100):
        stage.on_frame(seg(b"p" * 100, seq=i), "out", float(i))
    stage.close()
    assert path.stat().st_size <= 4096
    written = len(read_pcapng(path).packets)
    assert 10 < written < 100 and stage.full
    assert stage.frames == written and stage.dropped == 100 - written


def test_ring_keeps_n_files_newest_frames_in_order(tmp_path: Path) -> None:
    path = tmp_path / "ring.pcapng"
    stage = PcapngCaptureStage(path, max_bytes=4096, files=3, comments=False)
    for i in range(120):
        if i == 100:
            stage.write_line(LINE)  # lands in the file holding the next frame
        stage.on_frame(seg(b"p" * 100, seq=i), "out", float(i))
    stage.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ring.1.pcapng", "ring.2.pcapng", "ring.pcapng"]
    files = [path.with_name("ring.2.pcapng"), path.with_name("ring.1.pcapng"), path]
    seqs: list[int] = []
    after_secret: list[int] = []  # seq of the frame right after each DSB
    for f in files:
        assert f.stat().st_size <= 4096
        cap = read_pcapng(f)
        frames = [int.from_bytes(p.data[38:42], "big") for p in cap.packets]
        epbs = 0
        for block in cap.blocks:
            if block == DSB:
                after_secret.append(frames[epbs])
            epbs += block == EPB
        seqs += frames
    assert seqs == list(range(seqs[0], 120))  # the newest frames, in order, none lost between
    assert seqs[0] < 100 and after_secret == [100]
    assert stage.stats["capture.rotations"] >= 3 and stage.stats["capture.files_deleted"] >= 1
    assert stage.dropped == 0 and stage.frames == 120


@pytest.mark.parametrize("files", [1, 2])
def test_frame_larger_than_a_file_is_dropped_alone(tmp_path: Path, files: int) -> None:
    path = tmp_path / "ring.pcapng"
    stage = PcapngCaptureStage(path, max_bytes=4096, files=files)
    stage.on_frame(seg(b"small", seq=1), "out", 1.0)
    stage.on_frame(seg(b"p" * 5000), "out", 1.0)
    stage.on_frame(seg(b"small", seq=2), "out", 1.0)
    stage.close()
    assert stage.dropped == 1 and stage.frames == 2 and not stage.full
    assert stage.stats["capture.too_big"] == 1
    assert not path.with_name("ring.1.pcapng").exists()


def test_write_error_stops_the_capture_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = PcapngCaptureStage(tmp_path / "c.pcapng", flush_frames=1)
    stage.on_frame(seg(b"ok"), "out", 1.0)
    writer = stage._writer
    assert writer is not None

    def disk_full(data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer._file, "write", disk_full)
    assert stage.on_frame(seg(b"lost", seq=2), "out", 1.1) is True
    assert not stage.active and stage.stats["capture.errors"] == 1
    stage.on_frame(seg(HELLO, seq=3), "out", 1.2)
    stage.emit("tls.handshake", verdict())
    stage.write_line(LINE)
    stage.close()
    assert stage.dropped == 1 and stage.frames == 1


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_shows_the_verdict_on_the_server_hello(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    stage = PcapngCaptureStage(path, resolution="ns")
    stage.on_frame(seg(b"\x16\x03\x01\x00\x01\x01", out=False, seq=1), "in", 1.0)
    stage.on_frame(seg(HELLO), "out", 1.0)
    stage.emit("tls.handshake", verdict(reason="ticket_unknown_key", offered="ticket"))
    stage.close()
    r = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "frame.comment", "-T", "fields", "-e", "frame.comment"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("full handshake: reason ticket_unknown_key, offered ticket")


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), st.booleans(), st.integers(1, 4), st.integers(0, 3)),
        st.tuples(st.just("verdict"), st.integers(1, 4)),
        st.tuples(st.just("line"), st.integers(0, 9)),
        st.tuples(st.just("timer"), st.floats(0, 3)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_property_every_frame_written_once_in_order_queue_bounded(ops: list[Any]) -> None:
    """Any interleaving of frames (ServerHellos or not), verdicts, key log lines and timers:
    nothing raises, the hold queue stays within its bound, and after close every frame is in the
    file exactly once, in the order it was seen, comments only on ServerHello frames."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.pcapng"
        stage = PcapngCaptureStage(path, max_hold_frames=5, hold_timeout=2.0)
        now = 0.0
        fed: list[bytes] = []
        lines: list[str] = []
        fed_before: dict[str, int] = {}  # line -> frames fed before it was given
        for op in ops:
            if op[0] == "frame":
                _, hello, port, seq = op
                now += 0.1
                frame = seg(HELLO if hello else b"data%d" % len(fed), port=port, seq=seq)
                fed.append(frame)
                stage.on_frame(frame, "out", now)
            elif op[0] == "verdict":
                stage.emit("tls.handshake", verdict(port=op[1]))
            elif op[0] == "line":
                line = f"CLIENT_RANDOM {op[1]:064x} {len(lines):096x}"
                lines.append(line)
                fed_before[line] = len(fed)
                stage.write_line(line)
            else:
                now += op[1]
                stage.handle_timer(now)
            assert stage.held <= 5
        stage.close()
        cap = read_pcapng(path)
        assert [p.data for p in cap.packets] == fed
        for p in cap.packets:
            assert not p.comments or server_hello_key(p.data) is not None
        written = b"".join(data for _, data in cap.secrets).decode().splitlines()
        assert written == lines
        # a secret precedes every frame fed after it was given (it may decrypt them)
        epbs, secrets = 0, iter(cap.secrets)
        for block in cap.blocks:
            epbs += block == EPB
            if block == DSB:
                for line in next(secrets)[1].decode().splitlines():
                    assert epbs <= fed_before[line]
