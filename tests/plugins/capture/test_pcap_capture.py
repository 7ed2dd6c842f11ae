"""PcapCaptureStage: records both directions through the host stack, bounded, flushed; a capture
replayed through PcapSource gives back the very same bytes."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from pipeline.chain import PacketChain
from pipeline.host import HostStack
from pipeline.io.pcap import PcapSource, read_pcap
from plugins.capture.pcap import PcapCaptureStage

OUR, PEER = "02:00:00:00:0a:10", "02:00:00:00:0b:01"
VIP = bytes([192, 0, 2, 10])
INPUT = [
    raw(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER)
        / ARP(op=1, hwsrc=PEER, psrc="192.0.2.1", pdst="192.0.2.10")
    ),
    raw(Ether(dst=OUR, src=PEER) / IP(src="192.0.2.1", dst="192.0.2.10") / ICMP(seq=1) / b"one"),
    raw(Ether(dst=OUR, src=PEER) / IP(src="192.0.2.1", dst="192.0.2.99") / ICMP(seq=2)),
    raw(Ether(dst=OUR, src=PEER) / IP(src="192.0.2.1", dst="192.0.2.10") / ICMP(seq=3) / b"three"),
]


def run_host(stage: PcapCaptureStage) -> tuple[list[tuple[float, bytes]], collections.Counter[str]]:
    """Feeds INPUT at t=100, 101, ...; returns every frame in and out, in order, with its time."""
    counters: collections.Counter[str] = collections.Counter()
    host = HostStack(
        bytes.fromhex(OUR.replace(":", "")),
        [VIP],
        counters=counters,
        packet_chain=PacketChain([stage]),
    )
    seen: list[tuple[float, bytes]] = []
    for i, frame in enumerate(INPUT):
        now = 100.0 + i
        host.receive_frame(frame, now)
        seen.append((now, frame))
        seen.extend((now, out) for out in host.frames_to_send(now))
    return seen, counters


def test_capture_then_replay_is_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    stage = PcapCaptureStage(path)
    seen, counters = run_host(stage)
    stage.close()
    assert len(seen) == 7  # 4 in, ARP reply and 2 echo replies out
    assert stage.frames == 7 and stage.dropped == 0
    source = PcapSource(path)
    replayed: list[tuple[float, bytes]] = []
    for _ in range(100):
        batch = source.read_frames(3)
        if not batch:
            break
        replayed.extend(batch)
    assert replayed == seen
    # Feeding the replayed input to a fresh host gives the same answers.
    stage2 = PcapCaptureStage(tmp_path / "again.pcap", directions=("out",))
    counters2: collections.Counter[str] = collections.Counter()
    host2 = HostStack(
        bytes.fromhex(OUR.replace(":", "")),
        [VIP],
        counters=counters2,
        packet_chain=PacketChain([stage2]),
    )
    inputs = [(t, f) for t, f in replayed if Ether(f).src == PEER]
    outs = []
    for t, f in inputs:
        host2.receive_frame(f, t)
        outs.extend(host2.frames_to_send(t))
    assert outs == [f for _, f in seen if Ether(f).src == OUR]
    stage2.close()
    assert [f for _, f in read_pcap(tmp_path / "again.pcap")] == outs


def test_capture_stops_at_max_frames_and_counts(tmp_path: Path) -> None:
    stage = PcapCaptureStage(tmp_path / "c.pcap", max_frames=3)
    run_host(stage)
    stage.close()
    assert len(list(read_pcap(tmp_path / "c.pcap"))) == 3
    assert stage.frames == 3 and stage.dropped == 4 and stage.full


def test_capture_never_exceeds_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "b.pcap"
    limit = 24 + (16 + len(INPUT[0])) + (16 + 42)  # header, ARP request, ARP reply
    stage = PcapCaptureStage(path, max_bytes=limit)
    run_host(stage)
    stage.close()
    assert path.stat().st_size <= limit
    assert len(list(read_pcap(path))) == 2 and stage.dropped == 5


def test_capture_flushes_regularly(tmp_path: Path) -> None:
    path = tmp_path / "f.pcap"
    stage = PcapCaptureStage(path, flush_frames=2, flush_interval=1000.0)
    stage.on_frame(b"a" * 20, "in", 1.0)
    assert path.stat().st_size == 24
    stage.on_frame(b"b" * 20, "out", 1.1)
    assert path.stat().st_size == 24 + 2 * 36
    stage.on_frame(b"c" * 20, "in", 1.2)
    timed = PcapCaptureStage(tmp_path / "t.pcap", flush_frames=1000, flush_interval=0.5)
    timed.on_frame(b"a" * 20, "in", 1.0)
    timed.on_frame(b"b" * 20, "in", 1.6)
    assert (tmp_path / "t.pcap").stat().st_size == 24 + 2 * 36
    stage.close()
    timed.close()
    assert len(list(read_pcap(path))) == 3


def test_write_error_stops_the_capture_without_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = PcapCaptureStage(tmp_path / "e.pcap")

    def broken(ts: float, frame: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    assert stage._writer is not None
    monkeypatch.setattr(stage._writer, "write", broken)
    assert stage.on_frame(b"x" * 20, "in", 0.0) is True
    assert stage.on_frame(b"y" * 20, "in", 0.0) is True
    assert stage.counters["capture.errors"] == 1 and stage.dropped == 1
    stage.close()
