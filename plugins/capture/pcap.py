"""``PcapCaptureStage``: a packet stage recording every frame, in and out, to a classic pcap file.

Bounded: once ``max_bytes`` (file size) or ``max_frames`` would be exceeded it stops writing and
counts what it did not record (``capture.dropped``). It flushes every ``flush_frames`` frames or
``flush_interval`` seconds of ``now``, and on ``close()``. It never drops a frame from the data
path (always returns True), and a write error stops the capture instead of raising.
Timestamps are the ``now`` the stage is given, plus ``ts_offset`` (e.g. wall minus monotonic).
"""

from __future__ import annotations

import collections
from pathlib import Path

from pipeline.chain import Direction
from pipeline.io.pcap import PcapWriter


class PcapCaptureStage:
    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_frames: int | None = None,
        snaplen: int = 65535,
        flush_frames: int = 64,
        flush_interval: float = 1.0,
        ts_offset: float = 0.0,
        directions: tuple[Direction, ...] = ("in", "out"),
        counters: collections.Counter[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_frames = max_frames
        self.flush_frames = flush_frames
        self.flush_interval = flush_interval
        self.ts_offset = ts_offset
        self.directions = frozenset(directions)
        self.counters = counters if counters is not None else collections.Counter()
        self._writer: PcapWriter | None = PcapWriter(self.path, snaplen=snaplen)
        self._unflushed = 0
        self._last_flush: float | None = None
        self.full = False

    @property
    def frames(self) -> int:
        return self.counters["capture.frames"]

    @property
    def dropped(self) -> int:
        return self.counters["capture.dropped"]

    def on_frame(self, frame: bytes | memoryview, direction: Direction, now: float) -> bool:
        if direction not in self.directions:
            return True
        writer = self._writer
        if writer is None:
            self.counters["capture.dropped"] += 1
            return True
        size = PcapWriter.record_size(len(frame), writer.snaplen)
        if writer.bytes_written + size > self.max_bytes or (
            self.max_frames is not None and writer.frames_written >= self.max_frames
        ):
            self.full = True
            self.counters["capture.dropped"] += 1
            return True
        try:
            writer.write(now + self.ts_offset, frame)
            self.counters["capture.frames"] += 1
            self._unflushed += 1
            if self._last_flush is None:
                self._last_flush = now
            if (
                self._unflushed >= self.flush_frames
                or now - self._last_flush >= self.flush_interval
            ):
                writer.flush()
                self._unflushed = 0
                self._last_flush = now
        except OSError:
            self.counters["capture.errors"] += 1
            self._stop()
        return True

    def flush(self) -> None:
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError:
                self.counters["capture.errors"] += 1
                self._stop()
            self._unflushed = 0

    def _stop(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass

    def close(self) -> None:
        self.flush()
        self._stop()


__all__ = ["PcapCaptureStage"]
