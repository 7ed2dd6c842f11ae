"""Classic pcap writer/reader and PcapSource; scapy's reader and writer are the oracle."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.utils import PcapReader, rdpcap
from scapy.utils import PcapWriter as ScapyPcapWriter

from pipeline.errors import DecodeError
from pipeline.io.pcap import PcapSource, PcapWriter, read_pcap

FRAMES = [
    raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / ICMP() / (b"x" * n))
    for n in (0, 10, 1400)
]


def test_writer_output_reads_back_in_scapy_and_in_our_reader(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(path) as w:
        for i, frame in enumerate(FRAMES):
            w.write(1000.25 + i, frame)
    assert w.frames_written == 3 and w.bytes_written == path.stat().st_size
    pkts = rdpcap(str(path))
    assert [raw(p) for p in pkts] == FRAMES
    assert [float(p.time) for p in pkts] == pytest.approx([1000.25, 1001.25, 1002.25])
    assert list(read_pcap(path)) == [(1000.25 + i, f) for i, f in enumerate(FRAMES)]


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("endian", ["<", ">"])
def test_reader_accepts_scapy_captures_in_both_resolutions_and_byte_orders(
    tmp_path: Path, nano: bool, endian: str
) -> None:
    path = tmp_path / "s.pcap"
    w = ScapyPcapWriter(str(path), nano=nano, endianness=endian, linktype=1, sync=True)
    for i, frame in enumerate(FRAMES):
        pkt = Ether(frame)
        pkt.time = 5 + i * 0.5
        w.write(pkt)
    w.close()
    got = list(read_pcap(path))
    assert [f for _, f in got] == FRAMES
    assert [t for t, _ in got] == pytest.approx([5.0, 5.5, 6.0])


def test_timestamp_rounding_carries_into_seconds() -> None:
    buf = io.BytesIO()
    PcapWriter(buf).write(3.9999999, b"\x00" * 14)
    buf.seek(0)
    assert next(read_pcap(buf))[0] == 4.0


def test_snaplen_truncates_records(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcap"
    with PcapWriter(path, snaplen=64) as w:
        w.write(0.0, FRAMES[2])
    [pkt] = list(PcapReader(str(path)))
    assert len(raw(pkt)) == 64 and pkt.wirelen == len(FRAMES[2])


def good_capture() -> bytes:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.write(1.0, FRAMES[1])
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xd4\xc3\xb2",  # global header cut
        b"\x0a\x0d\x0d\x0a" + bytes(20),  # pcapng
        good_capture()[:30],  # record header cut
        good_capture()[:-1],  # record cut
        good_capture()[:20] + struct.pack("<I", 105) + good_capture()[24:],  # 802.11 link type
        good_capture()[:4] + b"\x01\x00" + good_capture()[6:],  # version 1
        good_capture()[:32] + struct.pack("<I", 1 << 30) + good_capture()[36:],  # huge incl_len
    ],
)
def test_reader_rejects_bad_files(data: bytes) -> None:
    with pytest.raises(DecodeError):
        list(read_pcap(io.BytesIO(data)))


def test_pcap_source_replays_with_timestamps_and_records_replies(tmp_path: Path) -> None:
    src_path, out_path = tmp_path / "in.pcap", tmp_path / "out.pcap"
    with PcapWriter(src_path) as w:
        for i, frame in enumerate(FRAMES):
            w.write(10.0 + i, frame)
    source = PcapSource(src_path, output=out_path)
    assert source.fileno() is None
    first = source.read_frames(2)
    assert first == [(10.0, FRAMES[0]), (11.0, FRAMES[1])]
    assert source.write_frame(b"reply-frame-bytes")
    assert source.read_frames(64) == [(12.0, FRAMES[2])]
    assert source.read_frames(64) == []
    source.close()
    assert list(read_pcap(out_path)) == [(11.0, b"reply-frame-bytes")]
    assert source.describe()["frames_read"] == 3


def test_pcap_source_without_output_counts_discarded_replies(tmp_path: Path) -> None:
    path = tmp_path / "in.pcap"
    with PcapWriter(path) as w:
        w.write(1.0, FRAMES[0])
    source = PcapSource(path)
    assert not source.write_frame(b"x")
    assert source.discarded == 1
    source.close()
    assert source.read_frames() == []


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"", good_capture()[:24], good_capture()]), st.binary(max_size=120))
def test_reader_on_random_bytes_returns_records_or_decode_error(prefix: bytes, rest: bytes) -> None:
    try:
        records = list(read_pcap(io.BytesIO(prefix + rest)))
    except DecodeError:
        return
    assert all(isinstance(ts, float) and isinstance(f, bytes) for ts, f in records)
