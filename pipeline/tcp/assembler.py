"""Receive-side reassembly: segments in any order in, each in-order byte out exactly once.

Offsets are unwrapped sequence numbers (see ``seq.py``). Out-of-order data is kept as the chunks
that arrived (never merged, so nothing is copied twice) in a sorted list bounded in bytes and in
chunks; what the bounds refuse is counted and the peer retransmits it. Data that overlaps what was
already received is compared with it: the first copy is kept and a differing copy is recorded in
``conflicts`` (an evasion signal). Delivered bytes are remembered for ``history`` bytes so that
retransmissions of already-delivered data are checked too.
"""

from __future__ import annotations

from bisect import bisect_right


class Reassembler:
    __slots__ = (
        "nxt",
        "max_bytes",
        "max_chunks",
        "history_max",
        "_starts",
        "_chunks",
        "ooo_bytes",
        "_ready",
        "ready_bytes",
        "_history",
        "_history_start",
        "conflicts",
        "refused",
        "last_start",
    )

    def __init__(self, nxt: int, max_bytes: int, max_chunks: int, history: int = 0) -> None:
        self.nxt = nxt  # next in-order offset expected
        self.max_bytes = max_bytes
        self.max_chunks = max_chunks
        self.history_max = history
        self._starts: list[int] = []
        self._chunks: list[bytes] = []
        self.ooo_bytes = 0
        self._ready: list[bytes] = []
        self.ready_bytes = 0
        self._history = bytearray()
        self._history_start = nxt
        self.conflicts: list[tuple[int, int]] = []  # (offset, length) of differing overlaps
        self.refused = 0  # bytes refused by the out-of-order bounds
        self.last_start: int | None = None  # offset of the most recently stored chunk (SACK)

    # ---- input ---------------------------------------------------------------------------
    def add(self, off: int, data: bytes | memoryview) -> int:
        """Add ``data`` at ``off``; returns how many new in-order bytes became readable."""
        end = off + len(data)
        nxt = self.nxt
        if off < nxt:
            if self.history_max:
                self._check_history(off, data)
            if end <= nxt:
                return 0
            data = data[nxt - off :]
            off = nxt
        starts = self._starts
        if off == nxt and (not starts or starts[0] >= end):
            self._deliver(bytes(data))
            if starts:  # a held chunk may start right where this one ended
                self._pull_chunks()
            return self.nxt - nxt
        self._insert(off, data)
        if off == nxt:
            self._pull_chunks()
        return self.nxt - nxt

    def check_old(self, off: int, data: bytes | memoryview) -> None:
        """Compare a retransmission of already-delivered data with the history."""
        if self.history_max and off < self.nxt:
            self._check_history(off, data)

    def _check_history(self, off: int, data: bytes | memoryview) -> None:
        lo = max(off, self._history_start)
        hi = min(off + len(data), self.nxt)
        if lo >= hi:
            return
        hs = self._history_start
        if self._history[lo - hs : hi - hs] != data[lo - off : hi - off]:
            self.conflicts.append((lo, hi - lo))

    def _insert(self, off: int, data: bytes | memoryview) -> None:
        starts, chunks = self._starts, self._chunks
        end = off + len(data)
        i = bisect_right(starts, off) - 1
        if i < 0:
            i = 0
        pieces: list[tuple[int, int]] = []  # (start, end) of new data not yet held
        cur = off
        while i < len(starts) and cur < end:
            cs = starts[i]
            ce = cs + len(chunks[i])
            if ce <= cur:
                i += 1
                continue
            if cs >= end:
                break
            if cs > cur:
                pieces.append((cur, cs))
            lo, hi = max(cs, off), min(ce, end)
            if lo < hi and chunks[i][lo - cs : hi - cs] != data[lo - off : hi - off]:
                self.conflicts.append((lo, hi - lo))
            cur = max(cur, ce)
            i += 1
        if cur < end:
            pieces.append((cur, end))
        for ps, pe in pieces:
            n = pe - ps
            if ps != self.nxt and (
                self.ooo_bytes + n > self.max_bytes or len(starts) >= self.max_chunks
            ):
                self.refused += n
                continue
            j = bisect_right(starts, ps)
            starts.insert(j, ps)
            chunks.insert(j, bytes(data[ps - off : pe - off]))
            self.ooo_bytes += n
            self.last_start = ps

    def _pull_chunks(self) -> None:
        starts, chunks = self._starts, self._chunks
        k = 0
        while k < len(starts) and starts[k] <= self.nxt:
            cs, chunk = starts[k], chunks[k]
            self.ooo_bytes -= len(chunk)
            if cs + len(chunk) > self.nxt:
                self._deliver(chunk[self.nxt - cs :] if cs < self.nxt else chunk)
            k += 1
        if k:
            del starts[:k]
            del chunks[:k]
            if not starts:
                self.last_start = None

    def _deliver(self, data: bytes) -> None:
        self._ready.append(data)
        self.ready_bytes += len(data)
        self.nxt += len(data)
        if self.history_max:
            h = self._history
            h += data
            if len(h) > 2 * self.history_max:
                cut = len(h) - self.history_max
                del h[:cut]
                self._history_start += cut

    # ---- output --------------------------------------------------------------------------
    def read(self, limit: int | None = None) -> bytes:
        """Up to ``limit`` in-order bytes not read yet (all when ``limit`` is None)."""
        ready = self._ready
        if not ready:
            return b""
        if limit is None or limit >= self.ready_bytes:
            data = ready[0] if len(ready) == 1 else b"".join(ready)
            ready.clear()
            self.ready_bytes = 0
            return data
        out: list[bytes] = []
        n = 0
        while ready and n < limit:
            chunk = ready[0]
            if n + len(chunk) <= limit:
                out.append(chunk)
                n += len(chunk)
                del ready[0]
            else:
                take = limit - n
                out.append(chunk[:take])
                ready[0] = chunk[take:]
                n = limit
        self.ready_bytes -= n
        return b"".join(out)

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` blocks of contiguous out-of-order data, the most recent first."""
        blocks: list[tuple[int, int]] = []
        for s, c in zip(self._starts, self._chunks, strict=True):
            e = s + len(c)
            if blocks and blocks[-1][1] >= s:
                blocks[-1] = (blocks[-1][0], max(blocks[-1][1], e))
            else:
                blocks.append((s, e))
        if self.last_start is not None:
            for k, (s, e) in enumerate(blocks):
                if s <= self.last_start < e:
                    blocks.insert(0, blocks.pop(k))
                    break
        return blocks[:limit]

    @property
    def ooo_chunks(self) -> int:
        return len(self._starts)


__all__ = ["Reassembler"]
