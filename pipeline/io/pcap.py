"""Classic pcap files (LINKTYPE_ETHERNET), written and read with ``struct``.

``PcapWriter`` writes microsecond-resolution captures; ``read_pcap`` reads microsecond or
nanosecond captures of either byte order and raises ``DecodeError`` on a bad magic, another link
type, or a truncated record. ``PcapSource`` replays a capture as the NF's input, each frame with
its captured timestamp (the loop uses it as ``now``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pipeline.errors import DecodeError

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 65535
MAX_RECORD = 262144  # larger incl_len values are corrupt, whatever the header's snaplen says

GLOBAL_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")

PathOrFile = str | Path | IO[bytes]


def _split_ts(ts: float) -> tuple[int, int]:
    if ts < 0:
        ts = 0.0
    sec = int(ts)
    usec = round((ts - sec) * 1_000_000)
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    return sec & 0xFFFFFFFF, usec


class PcapWriter:
    """Appends Ethernet frames to a classic pcap file (or an open binary file object)."""

    def __init__(self, target: PathOrFile, snaplen: int = DEFAULT_SNAPLEN) -> None:
        if isinstance(target, str | Path):
            self._file: IO[bytes] = open(target, "wb")  # noqa: SIM115 - closed by close()
            self._owned = True
        else:
            self._file = target
            self._owned = False
        self.snaplen = snaplen
        self._file.write(_GLOBAL.pack(MAGIC_US, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
        self._file.flush()  # a capture that never gets a frame is still a valid file
        self.bytes_written = GLOBAL_HEADER_LEN
        self.frames_written = 0
        self.closed = False

    @staticmethod
    def record_size(frame_len: int, snaplen: int = DEFAULT_SNAPLEN) -> int:
        return RECORD_HEADER_LEN + min(frame_len, snaplen)

    def write(self, ts: float, frame: bytes | bytearray | memoryview) -> int:
        """Write one record; returns its size in bytes."""
        sec, usec = _split_ts(ts)
        data = bytes(frame[: self.snaplen])
        self._file.write(_RECORD.pack(sec, usec, len(data), len(frame)))
        self._file.write(data)
        size = RECORD_HEADER_LEN + len(data)
        self.bytes_written += size
        self.frames_written += 1
        return size

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._file.flush()
        if self._owned:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DecodeError(f"truncated pcap: {what} needs {n} bytes, got {len(data)}")
    return data


def _records(f: IO[bytes]) -> Iterator[tuple[float, bytes]]:
    header = _read_exact(f, GLOBAL_HEADER_LEN, "global header")
    (magic,) = struct.unpack_from("<I", header)
    if magic in (MAGIC_US, MAGIC_NS):
        order = "<"
    else:
        (magic,) = struct.unpack_from(">I", header)
        if magic not in (MAGIC_US, MAGIC_NS):
            raise DecodeError(f"not a classic pcap file (magic {header[:4].hex()})")
        order = ">"
    _m, major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack(order + "IHHiIII", header)
    if major != 2:
        raise DecodeError(f"unsupported pcap version {major}")
    if network & 0xFFFF != LINKTYPE_ETHERNET:
        raise DecodeError(f"pcap link type {network & 0xFFFF} is not Ethernet")
    scale = 1e-9 if magic == MAGIC_NS else 1e-6
    record = struct.Struct(order + "IIII")
    while True:
        head = f.read(RECORD_HEADER_LEN)
        if not head:
            return
        if len(head) != RECORD_HEADER_LEN:
            raise DecodeError(f"truncated pcap: record header of {len(head)} bytes")
        sec, frac, incl, _orig = record.unpack(head)
        if incl > MAX_RECORD:
            raise DecodeError(f"pcap record of {incl} bytes is implausible")
        yield sec + frac * scale, _read_exact(f, incl, "record")


def read_pcap(source: PathOrFile) -> Iterator[tuple[float, bytes]]:
    """(timestamp, frame) pairs of a classic pcap file, in file order."""
    if isinstance(source, str | Path):
        with open(source, "rb") as f:
            yield from _records(f)
    else:
        yield from _records(source)


class PcapSource:
    """Replays a capture as input frames: ``read_frames`` yields (timestamp, frame) pairs.

    What the NF sends back is written to ``output`` (a pcap path) when given, else counted and
    discarded. ``fileno()`` is None: the loop drains the source instead of polling it.
    """

    def __init__(self, path: str | Path, output: str | Path | None = None) -> None:
        self.path = Path(path)
        self._records = read_pcap(self.path)
        self._writer = PcapWriter(output) if output is not None else None
        self._last_ts = 0.0
        self.frames_read = 0
        self.frames_written = 0
        self.discarded = 0  # replies not written (no output file)
        self.closed = False

    def read_frames(self, max_frames: int = 64) -> list[tuple[float, bytes]]:
        out: list[tuple[float, bytes]] = []
        if self.closed:
            return out
        for ts, frame in self._records:
            out.append((ts, frame))
            self._last_ts = ts
            if len(out) >= max_frames:
                break
        self.frames_read += len(out)
        return out

    def write_frame(self, frame: bytes | bytearray | memoryview) -> bool:
        if self._writer is None or self.closed:
            self.discarded += 1
            return False
        self._writer.write(self._last_ts, frame)
        self.frames_written += 1
        return True

    def fileno(self) -> int | None:
        return None

    def describe(self) -> dict[str, object]:
        return {"kind": "pcap", "path": str(self.path), "frames_read": self.frames_read}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close = getattr(self._records, "close", None)
        if close is not None:
            close()
        if self._writer is not None:
            self._writer.close()


__all__ = ["PcapSource", "PcapWriter", "read_pcap"]
