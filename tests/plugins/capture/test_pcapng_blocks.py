"""pcapng blocks: bytes -> fields -> bytes, truncation and garbage refused with DecodeError, and
real ``tshark`` reads what we write (timestamps, direction, comments, secrets block)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from pipeline.errors import DecodeError
from plugins.capture.pcapng_blocks import (
    DSB,
    EPB,
    IDB,
    SECRETS_TLS_KEYLOG,
    SHB,
    PcapngWriter,
    dsb_block,
    encode_block,
    epb_block,
    read_pcapng,
    shb_block,
)

FRAME = raw(Ether(src="02:00:00:00:0b:01", dst="02:00:00:00:0a:10") / IP() / UDP() / b"hello")
TS_NS = 1_800_000_000_123_456_789
LINE = "CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def write_sample(path: Path, resolution: str = "us") -> None:
    w = PcapngWriter(path, resolution=resolution)
    w.write_secrets([LINE])
    w.write_packet(TS_NS, FRAME, "in")
    w.write_packet(TS_NS + 1_000, FRAME + b"\x00", "out", comment="full handshake: reason x")
    w.close()


@pytest.mark.parametrize("resolution", ["us", "ns"])
def test_round_trip(tmp_path: Path, resolution: str) -> None:
    path = tmp_path / "f.pcapng"
    write_sample(path, resolution)
    data = path.read_bytes()
    assert len(data) % 4 == 0
    cap = read_pcapng(data)
    assert cap.blocks == [SHB, IDB, DSB, EPB, EPB]
    assert cap.interfaces == [(1, 6 if resolution == "us" else 9)]
    assert cap.secrets == [(SECRETS_TLS_KEYLOG, (LINE + "\n").encode())]
    one, two = cap.packets
    assert (one.data, one.orig_len, one.direction, one.comments) == (FRAME, len(FRAME), "in", ())
    assert (two.direction, two.comments) == ("out", ("full handshake: reason x",))
    if resolution == "ns":
        assert one.ts == TS_NS and two.ts - one.ts == 1_000
    else:
        assert one.ts == TS_NS // 1000 and two.ts - one.ts == 1
    assert one.seconds == pytest.approx(TS_NS / 1e9)


def test_block_lengths_are_padded_and_repeated() -> None:
    for size in range(0, 9):
        block = epb_block(5, b"x" * size)
        total = struct.unpack_from("<I", block, 4)[0]
        assert total == len(block) and total % 4 == 0
        assert struct.unpack_from("<I", block, total - 4)[0] == total
    secrets = dsb_block(["a"])  # 2 bytes of data padded to 4
    assert struct.unpack_from("<III", secrets, 8) == (SECRETS_TLS_KEYLOG, 2, 0x00000A61)


def test_snaplen_cuts_frames_but_keeps_original_length(tmp_path: Path) -> None:
    path = tmp_path / "s.pcapng"
    w = PcapngWriter(path, snaplen=20)
    w.write_packet(0, FRAME)
    w.close()
    [p] = read_pcapng(path).packets
    assert p.data == FRAME[:20] and p.orig_len == len(FRAME) and p.direction is None


def test_big_endian_section_is_read() -> None:
    body = struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1)
    shb = struct.pack(">II", SHB, 12 + len(body)) + body + struct.pack(">I", 12 + len(body))
    idb_body = struct.pack(">HHI", 1, 0, 65535)
    idb = struct.pack(">II", IDB, 20) + idb_body + struct.pack(">I", 20)
    epb_body = struct.pack(">IIIII", 0, 0, 7, 3, 3) + b"abc\x00"
    epb = struct.pack(">II", EPB, 12 + len(epb_body)) + epb_body + struct.pack(">I", 36)
    [p] = read_pcapng(shb + idb + epb).packets
    assert (p.ts, p.data, p.resolution) == (7, b"abc", 6)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", None),
        (b"\x01\x00\x00\x00" + b"\x00" * 12, "section header"),
        (shb_block()[:-4], "truncated|length"),
        (shb_block()[:8] + b"\x00\x00\x00\x00" + shb_block()[12:], "magic"),
        (shb_block() + epb_block(0, b"x"), "undeclared interface"),
        (shb_block() + encode_block(EPB, b"\x00" * 8), "short packet"),
        (shb_block() + b"\x06\x00\x00\x00\x10\x00\x00\x00", "truncated|length"),
    ],
)
def test_malformed_files_raise_decode_error(data: bytes, message: str | None) -> None:
    if message is None:
        assert read_pcapng(data).blocks == []
        return
    with pytest.raises(DecodeError, match=message):
        read_pcapng(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_decode_error(data: bytes) -> None:
    for blob in (data, shb_block() + data):
        try:
            read_pcapng(blob)
        except DecodeError:
            pass


def test_long_comment_cut_on_a_character_boundary() -> None:
    from plugins.capture.pcapng_blocks import MAX_COMMENT, idb_block

    data = shb_block() + idb_block() + epb_block(1, b"x", comment="é" * MAX_COMMENT)
    [p] = read_pcapng(data).packets
    assert p.comments == ("é" * (MAX_COMMENT // 2),)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.text(max_size=40))
def test_any_frame_and_comment_round_trip(frame: bytes, comment: str) -> None:
    from plugins.capture.pcapng_blocks import idb_block

    data = shb_block() + idb_block() + epb_block(1, frame, direction="out", comment=comment)
    [p] = read_pcapng(data).packets
    assert p.data == frame and p.comments == ((comment,) if comment else ())


@needs_tshark
def test_tshark_reads_frames_directions_comments_and_secrets(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    write_sample(path, "ns")
    r = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.comment",
            "-e",
            "udp.payload",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(rows) == 2
    assert rows[0][0].startswith("1800000000.123456789")
    assert rows[1][1] == "full handshake: reason x"
    r = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "frame.comment", "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout.split() == ["2"]
    r = subprocess.run(["capinfos", "-D", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Number of decryption secrets in file: 1" in " ".join(r.stdout.split()), r.stdout


@needs_tshark
def test_our_secrets_block_matches_editcap_inject_secrets(tmp_path: Path) -> None:
    """Wireshark's own editcap writes the same DSB payload for the same key log."""
    plain = tmp_path / "plain.pcapng"
    w = PcapngWriter(plain)
    w.write_packet(TS_NS, FRAME)
    w.close()
    keys = tmp_path / "keys.txt"
    keys.write_text(LINE + "\n")
    theirs = tmp_path / "theirs.pcapng"
    r = subprocess.run(
        ["editcap", "--inject-secrets", f"tls,{keys}", str(plain), str(theirs)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    ours = tmp_path / "ours.pcapng"
    write_sample(ours)
    assert read_pcapng(theirs).secrets == read_pcapng(ours).secrets
    assert DSB in read_pcapng(theirs).blocks
