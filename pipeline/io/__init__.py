"""Frame sources and sinks: where Ethernet frames come from and go to.

``TapPort`` (a TAP device), ``PcapSource`` (replay of a capture) and ``MemoryPort`` (tests)
implement both protocols. A source without a file descriptor (``fileno() -> None``) is drained by
the loop instead of polled; a timed source yields ``(timestamp, frame)`` pairs whose timestamps
the loop uses as ``now``.

A sink may receive ``pipeline.wire.gso.GsoBytes`` (a TCP super-segment larger than the MTU) only
when the TCP stack was built with ``gso=True``, i.e. for a ``TapPort`` with ``offload=True``.
"""

from __future__ import annotations

from typing import Protocol


class FrameSource(Protocol):
    def read_frames(self, max_frames: int = 64) -> list[bytes]:
        """Up to ``max_frames`` frames that are ready now (never blocks)."""
        ...

    def fileno(self) -> int | None:
        """A pollable descriptor, or None for a source that is drained instead."""
        ...

    def close(self) -> None: ...


class TimedFrameSource(Protocol):
    def read_frames(self, max_frames: int = 64) -> list[tuple[float, bytes]]:
        """Up to ``max_frames`` (timestamp, frame) pairs, in capture order."""
        ...

    def fileno(self) -> int | None: ...

    def close(self) -> None: ...


class FrameSink(Protocol):
    def write_frame(self, frame: bytes | bytearray | memoryview) -> bool:
        """Send one frame; False when it was dropped (counted by the sink)."""
        ...

    def close(self) -> None: ...


__all__ = ["FrameSink", "FrameSource", "TimedFrameSource"]
