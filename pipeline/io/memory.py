"""An in-memory frame port for tests and in-process tools: inject frames, collect what is sent.

Both directions are bounded; what a bound refuses is counted (``inject_drops``, ``write_drops``).
"""

from __future__ import annotations

from collections import deque


class MemoryPort:
    """FrameSource + FrameSink over two bounded queues. ``fileno()`` is None: the loop drains it."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._rx: deque[bytes] = deque()
        self._tx: deque[bytes] = deque()
        self.inject_drops = 0
        self.write_drops = 0
        self.closed = False

    # ---- test side -------------------------------------------------------------------------
    def inject(self, frame: bytes | bytearray | memoryview) -> bool:
        """Queue a frame for the NF to read; False (and counted) when the queue is full."""
        if self.closed or len(self._rx) >= self.capacity:
            self.inject_drops += 1
            return False
        self._rx.append(bytes(frame))
        return True

    def sent(self) -> list[bytes]:
        """Every frame the NF wrote since the last call, oldest first."""
        out = list(self._tx)
        self._tx.clear()
        return out

    # ---- FrameSource / FrameSink -----------------------------------------------------------
    def read_frames(self, max_frames: int = 64) -> list[bytes]:
        n = min(max_frames, len(self._rx))
        return [self._rx.popleft() for _ in range(n)]

    def write_frame(self, frame: bytes | bytearray | memoryview) -> bool:
        if self.closed or len(self._tx) >= self.capacity:
            self.write_drops += 1
            return False
        self._tx.append(bytes(frame))
        return True

    def fileno(self) -> int | None:
        return None

    def describe(self) -> dict[str, object]:
        return {"kind": "memory", "queued_in": len(self._rx), "queued_out": len(self._tx)}

    def close(self) -> None:
        self.closed = True


__all__ = ["MemoryPort"]
