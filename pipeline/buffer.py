"""Byte buffer for codecs: pull from a memoryview, push into a bytearray (aioquic's idiom).

``pull_block(n)`` reads an ``n``-byte length prefix and checks the block is consumed exactly;
``push_block(n)`` reserves an ``n``-byte length prefix and back-fills it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.errors import ApiError, DecodeError


class Buffer:
    """Read cursor over ``data`` (when given) or a growing write buffer (when not)."""

    __slots__ = ("_view", "_pos", "_end", "_out")

    def __init__(self, data: bytes | bytearray | memoryview | None = None) -> None:
        self._view = memoryview(data if data is not None else b"").cast("B")
        self._pos = 0
        self._end = len(self._view)
        self._out = bytearray()

    # ---- reading -------------------------------------------------------------------------
    @property
    def pos(self) -> int:
        return self._pos

    def remaining(self) -> int:
        return self._end - self._pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def _take(self, n: int) -> memoryview:
        if n < 0 or self._pos + n > self._end:
            raise DecodeError(f"truncated: need {n} bytes, have {self._end - self._pos}")
        v = self._view[self._pos : self._pos + n]
        self._pos += n
        return v

    def pull_bytes(self, n: int) -> bytes:
        return bytes(self._take(n))

    def pull_view(self, n: int) -> memoryview:
        return self._take(n)

    def pull_rest(self) -> bytes:
        return bytes(self._take(self._end - self._pos))

    def pull_uint8(self) -> int:
        return self._take(1)[0]

    def pull_uint16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def pull_uint24(self) -> int:
        return int.from_bytes(self._take(3), "big")

    def pull_uint32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def pull_uint64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def pull_uint(self, nbytes: int) -> int:
        return int.from_bytes(self._take(nbytes), "big")

    def pull_opaque(self, len_bytes: int) -> bytes:
        """A length-prefixed byte string."""
        return self.pull_bytes(self.pull_uint(len_bytes))

    @contextmanager
    def pull_block(self, len_bytes: int) -> Iterator[int]:
        """Length-prefixed block; raises DecodeError unless the body consumes it exactly."""
        length = self.pull_uint(len_bytes)
        end = self._pos + length
        if end > self._end:
            raise DecodeError(f"truncated: block of {length} bytes, have {self._end - self._pos}")
        saved_end = self._end
        self._end = end
        try:
            yield length
        finally:
            consumed_ok = self._pos == end
            self._end = saved_end
        if not consumed_ok:
            raise DecodeError(f"block of {length} bytes not consumed exactly")

    def expect_end(self) -> None:
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes")

    # ---- writing -------------------------------------------------------------------------
    def data(self) -> bytes:
        return bytes(self._out)

    def push_bytes(self, b: bytes | bytearray | memoryview) -> None:
        self._out += b

    def push_uint8(self, v: int) -> None:
        self._out.append(v)

    def push_uint16(self, v: int) -> None:
        self._out += v.to_bytes(2, "big")

    def push_uint24(self, v: int) -> None:
        self._out += v.to_bytes(3, "big")

    def push_uint32(self, v: int) -> None:
        self._out += v.to_bytes(4, "big")

    def push_uint64(self, v: int) -> None:
        self._out += v.to_bytes(8, "big")

    def push_uint(self, v: int, nbytes: int) -> None:
        self._out += v.to_bytes(nbytes, "big")

    def push_opaque(self, len_bytes: int, b: bytes) -> None:
        if len(b) >= 1 << (8 * len_bytes):
            raise ApiError(f"{len(b)} bytes do not fit a {len_bytes}-byte length")
        self._out += len(b).to_bytes(len_bytes, "big")
        self._out += b

    @contextmanager
    def push_block(self, len_bytes: int) -> Iterator[None]:
        start = len(self._out)
        self._out += bytes(len_bytes)
        yield
        length = len(self._out) - start - len_bytes
        if length >= 1 << (8 * len_bytes):
            raise ApiError(f"block of {length} bytes does not fit a {len_bytes}-byte length")
        self._out[start : start + len_bytes] = length.to_bytes(len_bytes, "big")
