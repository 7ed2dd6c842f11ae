"""pcapng captures a user opens decrypted in Wireshark: the capture stage.

It writes pcapng (``plugins.capture.pcapng_blocks``): an Enhanced Packet Block per frame with its
direction, Decryption Secrets Blocks (TLS key log) so Wireshark/tshark decrypt the TLS inside with
no key file, and each handshake's verdict as a comment on its ServerHello frame.

:class:`PcapngCaptureStage` is a packet stage that also listens to the event bus and the key log.
A handshake's verdict (the ``tls.handshake`` event) is known only after its ServerHello frame went
by, so the stage holds frames in a bounded delay queue from a connection's ServerHello until that
connection's verdict (or ``hold_timeout`` seconds, or the queue bound), then writes them in their
original order with the verdict as the ServerHello frame's comment. Key log lines are written as a
DSB ahead of the next frame written; every TLS 1.2 secret is logged before the handshake's verdict,
so the DSB precedes the held CCS/Finished frames it decrypts. Size limits: ``max_bytes`` per file;
``files = 1`` stops when full (``capture.dropped``), ``files > 1`` rotates (``capture.pcapng``
current, ``capture.1.pcapng`` newest old one ... ``capture.<files-1>.pcapng``); Wireshark needs a
connection's hellos to use its secret, so a connection decrypts in the file holding its handshake
(its secret goes there too, or into the next file when the file rotates). Never drops a frame from the data path; a write error
stops the capture (``capture.errors``) instead of raising.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.chain import Direction
from plugins.capture.pcapng_blocks import (
    DSB,
    EPB,
    IDB,
    RESOLUTIONS,
    SECRETS_TLS_KEYLOG,
    SHB,
    Pcapng,
    PcapngPacket,
    PcapngWriter,
    dsb_block,
    read_pcapng,
)

MAX_SECRET_LINE = 512
MAX_SECRETS = 4096  # key log lines waiting for the next frame written
HOLD_TIMEOUT = 5.0
MAX_HOLD_FRAMES = 4096
MAX_HOLD_BYTES = 8 << 20
MAX_RESOLVED = 4096  # ServerHellos already commented: their retransmissions are not held again


# ---- the frame classifier: which frames carry a ServerHello --------------------------------
def _addr(raw: bytes | memoryview, port: int) -> str:
    host = str(ipaddress.ip_address(bytes(raw)))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_hello_key(frame: bytes | memoryview) -> tuple[str, str, int] | None:
    """``(vip, client, seq)`` when ``frame`` is a TCP segment (from the VIP) whose payload starts
    a TLS handshake record holding a ServerHello, else None; ``vip`` and ``client`` are spelled as
    the ``tls.handshake`` event spells them, ``seq`` (the segment's sequence number) tells a
    retransmission from a new connection on the same ports. Never raises on any input."""
    n = len(frame)
    if n < 14:
        return None
    off = 12
    etype = frame[off] << 8 | frame[off + 1]
    if etype == 0x8100 and n >= 18:
        off += 4
        etype = frame[off] << 8 | frame[off + 1]
    ip = off + 2
    if etype == 0x0800 and n >= ip + 20:
        ihl = (frame[ip] & 0x0F) * 4
        if frame[ip + 9] != 6 or ihl < 20 or frame[ip + 6] & 0x3F or frame[ip + 7]:
            return None  # not TCP, or a fragment
        src, dst, tcp = frame[ip + 12 : ip + 16], frame[ip + 16 : ip + 20], ip + ihl
    elif etype == 0x86DD and n >= ip + 40:
        if frame[ip + 6] != 6:
            return None
        src, dst, tcp = frame[ip + 8 : ip + 24], frame[ip + 24 : ip + 40], ip + 40
    else:
        return None
    if n < tcp + 20:
        return None
    data = tcp + (frame[tcp + 12] >> 4) * 4
    if n < data + 6 or frame[data] != 22 or frame[data + 1] != 3 or frame[data + 5] != 2:
        return None
    sport = frame[tcp] << 8 | frame[tcp + 1]
    dport = frame[tcp + 2] << 8 | frame[tcp + 3]
    seq = int.from_bytes(frame[tcp + 4 : tcp + 8], "big")
    return _addr(src, sport), _addr(dst, dport), seq


def verdict_comment(ev: Mapping[str, Any]) -> str:
    """The packet comment for a ``tls.handshake`` event, e.g. ``abbreviated handshake: resumed by
    ticket, key 3f2a...`` or ``full handshake: reason ticket_unknown_key``."""
    outcome, reason, method = ev.get("outcome"), ev.get("reason"), ev.get("method")
    key, sid = ev.get("ticket_key"), ev.get("session_id") or ""
    parts: list[str]
    if outcome == "resumed":
        what = (
            "ticket" if method == "ticket" else "session ID" if method == "session_id" else method
        )
        parts = [f"abbreviated handshake: resumed by {what}"]
        if method == "ticket" and key:
            parts.append(f"key {key}")
        if sid:
            parts.append(f"session ID {sid[:16]}…")
        if ev.get("tickets_issued"):
            parts.append("ticket re-issued")
    elif outcome == "full":
        parts = [f"full handshake: reason {reason}", f"offered {ev.get('offered')}"]
        if ev.get("tickets_issued"):
            parts.append(f"new ticket, key {key}" if key else "new ticket")
        if sid:
            parts.append(f"session ID {sid[:16]}…")
    else:
        parts = [f"handshake failed: reason {reason}"]
        if ev.get("alert"):
            parts.append(f"alert {ev.get('alert')}")
    parts.append(f"conn {ev.get('conn')}")
    return ", ".join(parts)


@dataclass
class _Held:
    ts_ns: int
    frame: bytes
    direction: Direction
    held_at: float
    key: tuple[str, str] | None = None  # set while this ServerHello frame waits for its verdict
    seq: int = 0
    comment: str | None = None


class PcapngCaptureStage:
    """Packet stage writing pcapng with embedded TLS secrets and verdict comments.

    Also an ``EventBus`` (``emit``: give it the ``tls.handshake`` events, e.g. through a
    ``TeeBus``) and a ``KeyLog`` (``write_line``: give it the TLS key log lines).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        files: int = 1,
        secrets: bool = True,
        comments: bool = True,
        resolution: str = "us",
        snaplen: int = 65535,
        ts_offset: float = 0.0,
        flush_frames: int = 64,
        flush_interval: float = 1.0,
        hold_timeout: float = HOLD_TIMEOUT,
        max_hold_frames: int = MAX_HOLD_FRAMES,
        max_hold_bytes: int = MAX_HOLD_BYTES,
        counters: collections.Counter[str] | None = None,
    ) -> None:
        if files < 1:
            raise ValueError("files must be at least 1")
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
        self.path = Path(path)
        self.max_bytes, self.files = max_bytes, files
        self.secrets, self.comments = secrets, comments
        self.resolution, self.snaplen = resolution, snaplen
        self.ts_offset_ns = round(ts_offset * 1e9)
        self.flush_frames, self.flush_interval = flush_frames, flush_interval
        self.hold_timeout = hold_timeout
        self.max_hold_frames, self.max_hold_bytes = max_hold_frames, max_hold_bytes
        self.counters = counters if counters is not None else collections.Counter()
        self.stats: collections.Counter[str] = collections.Counter()  # this capture's own counts
        self.full = False
        self.file_index = 0  # files opened so far (1 = the first)
        self._queue: collections.deque[_Held] = collections.deque()
        self._queue_bytes = 0
        self._pending: dict[tuple[str, str], _Held] = {}
        self._resolved: collections.OrderedDict[tuple[str, str, int], None] = (
            collections.OrderedDict()
        )
        self._new_secrets: list[str] = []
        self._unflushed = 0
        self._last_flush: float | None = None
        self._writer: PcapngWriter | None = None
        self._writer = self._open(self.path)  # OSError here is the caller's (bad path)

    # ---- counters -------------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n
        self.stats[name] += n

    @property
    def frames(self) -> int:
        return self.stats["capture.frames"]

    @property
    def dropped(self) -> int:
        return self.stats["capture.dropped"]

    @property
    def held(self) -> int:
        return len(self._queue)

    @property
    def active(self) -> bool:
        return self._writer is not None

    # ---- inputs ---------------------------------------------------------------------------
    def on_frame(self, frame: bytes | memoryview, direction: Direction, now: float) -> bool:
        if self._writer is None or self.full:
            self._count("capture.dropped")
            return True
        ts_ns = self.ts_offset_ns + round(now * 1e9)
        hello = server_hello_key(frame) if direction == "out" and self._holding() else None
        if hello is not None and hello[:2] not in self._pending and hello not in self._resolved:
            key = (hello[0], hello[1])
            item = _Held(ts_ns, bytes(frame), direction, now, key, hello[2])
            self._pending[key] = item
            self._push(item)
        elif self._queue:
            self._push(_Held(ts_ns, bytes(frame), direction, now))
        else:
            self._write_frame(ts_ns, frame, direction, None)
        self._expire(now)
        self._maybe_flush(now)
        return True

    def emit(self, topic: str, fields: Mapping[str, Any]) -> None:
        """Event-bus listener: a ``tls.handshake`` verdict releases its held ServerHello."""
        if topic != "tls.handshake" or self._writer is None:
            return
        item = self._pending.pop((str(fields.get("vip")), str(fields.get("client"))), None)
        if item is None:
            self._count("capture.verdicts_unmatched")
            return
        self._resolve(item)
        if self.comments:
            item.comment = verdict_comment(fields)
            self._count("capture.comments")
        self._drain()

    def write_line(self, line: str) -> None:
        """Key-log listener: the line goes into a DSB ahead of the next frame written."""
        if not self.secrets or self._writer is None:
            return
        if len(line) > MAX_SECRET_LINE or "\n" in line or not line.isascii():
            self._count("capture.secrets_refused")
            return
        if len(self._new_secrets) >= MAX_SECRETS:
            self._count("capture.secrets_refused")
            return
        self._new_secrets.append(line)

    # ---- hold queue -----------------------------------------------------------------------
    def _holding(self) -> bool:
        return self.comments or self.secrets

    def _resolve(self, item: _Held) -> None:
        if item.key is not None:
            self._resolved[(*item.key, item.seq)] = None
            if len(self._resolved) > MAX_RESOLVED:
                self._resolved.popitem(last=False)
            item.key = None

    def _push(self, item: _Held) -> None:
        self._queue.append(item)
        self._queue_bytes += len(item.frame)
        self._count("capture.held")

    def _drain(self) -> None:
        queue = self._queue
        while queue and queue[0].key is None:
            item = queue.popleft()
            self._queue_bytes -= len(item.frame)
            self._write_frame(item.ts_ns, item.frame, item.direction, item.comment)

    def _expire(self, now: float) -> None:
        """Give up on the oldest verdict when it is late or the queue is over its bounds."""
        queue = self._queue
        while queue and (
            now - queue[0].held_at >= self.hold_timeout
            or len(queue) > self.max_hold_frames
            or self._queue_bytes > self.max_hold_bytes
        ):
            head = queue[0]
            if head.key is not None:
                self._pending.pop(head.key, None)
                self._resolve(head)
                self._count("capture.verdicts_missed")
            self._drain()

    def release(self) -> None:
        """Write every held frame now (verdicts still missing are given up)."""
        for item in self._queue:
            if item.key is not None:
                self._count("capture.verdicts_missed")
                self._resolve(item)
        self._pending.clear()
        self._drain()

    # ---- timers (so an idle NF still gives up late verdicts and flushes) --------------------
    def poll_at(self) -> float | None:
        """Monotonic time when held frames must be given up or written frames flushed."""
        if self._writer is None:
            return None
        times = []
        if self._queue:
            times.append(self._queue[0].held_at + self.hold_timeout)
        if self._unflushed and self._last_flush is not None:
            times.append(self._last_flush + self.flush_interval)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        if self._writer is not None:
            self._expire(now)
            self._maybe_flush(now)

    # ---- writing --------------------------------------------------------------------------
    def _write_secrets(self) -> None:
        """Pending key log lines as one DSB, when they fit in the file (else at the next frame,
        which rotates or stops the file)."""
        writer = self._writer
        if not self._new_secrets or writer is None or self.full:
            return
        block = dsb_block(self._new_secrets)
        if writer.bytes_written + len(block) > self.max_bytes:
            return
        writer.write_block(block)
        self._count("capture.secrets", len(self._new_secrets))
        self._new_secrets = []

    def _write_frame(
        self, ts_ns: int, frame: bytes | memoryview, direction: Direction, comment: str | None
    ) -> None:
        writer = self._writer
        if writer is None or self.full:
            self._count("capture.dropped")
            return
        try:
            block = writer.packet(ts_ns, frame, direction, comment)
            need = len(block) + (len(dsb_block(self._new_secrets)) if self._new_secrets else 0)
            if writer.bytes_written + need > self.max_bytes:
                if writer.header_bytes + need > self.max_bytes:
                    self._count("capture.dropped")  # larger than a whole file
                    self._count("capture.too_big")
                    return
                if self.files == 1:
                    self.full = True  # stop: every later frame is counted as dropped
                    self._count("capture.dropped")
                    return
                self._rotate()
                writer = self._writer
                assert writer is not None
            self._write_secrets()
            writer.write_block(block, frames=1)
            self._count("capture.frames")
            self._unflushed += 1
        except OSError:
            self._fail()

    def _rotate(self) -> None:
        """Close the current file, shift the older ones and open a new current file."""
        writer = self._writer
        assert writer is not None
        writer.close()
        self._writer = None
        self._shift()
        self._writer = self._open(self.path)
        self._count("capture.rotations")

    def _shift(self) -> None:
        """capture.pcapng -> capture.1.pcapng -> ... ; the oldest beyond ``files`` is removed."""
        old = self.rotated_path(self.files - 1)
        if old.exists():
            old.unlink()
            self._count("capture.files_deleted")
        for i in range(self.files - 2, 0, -1):
            src = self.rotated_path(i)
            if src.exists():
                src.rename(self.rotated_path(i + 1))
        self.path.rename(self.rotated_path(1))

    def rotated_path(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.{i}{self.path.suffix}")

    def _open(self, path: Path) -> PcapngWriter:
        writer = PcapngWriter(path, snaplen=self.snaplen, resolution=self.resolution)
        self.file_index += 1
        return writer

    def _maybe_flush(self, now: float) -> None:
        if self._last_flush is None:
            self._last_flush = now
        if self._unflushed and (
            self._unflushed >= self.flush_frames or now - self._last_flush >= self.flush_interval
        ):
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        if self._writer is not None:
            try:
                self._write_secrets()
                self._writer.flush()
            except OSError:
                self._fail()
            self._unflushed = 0

    def _fail(self) -> None:
        self._count("capture.errors")
        self._stop()

    def _stop(self) -> None:
        writer, self._writer = self._writer, None
        self._queue.clear()
        self._pending.clear()
        self._queue_bytes = 0
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass

    def close(self) -> None:
        if self._writer is not None:
            self.release()
            self.flush()
        self._stop()

    def status(self) -> dict[str, Any]:
        w = self._writer
        return {
            "path": str(self.path),
            "format": "pcapng",
            "active": w is not None,
            "full": self.full,
            "file": self.file_index,
            "file_bytes": w.bytes_written if w is not None else None,
            "max_bytes": self.max_bytes,
            "files": self.files,
            "secrets": self.secrets,
            "comments": self.comments,
            "held": len(self._queue),
            "counters": dict(sorted(self.stats.items())),
        }


__all__ = [
    "DSB",
    "EPB",
    "IDB",
    "SECRETS_TLS_KEYLOG",
    "SHB",
    "Pcapng",
    "PcapngCaptureStage",
    "PcapngPacket",
    "PcapngWriter",
    "dsb_block",
    "read_pcapng",
    "server_hello_key",
    "verdict_comment",
]
