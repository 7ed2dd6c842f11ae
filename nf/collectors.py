"""Event collectors' machinery: a SUB socket on the NF's event endpoint, a bounded receive loop
that stops cleanly on Ctrl-C, ``seq`` gap tracking, the record file format and its reader, and
the one-line renderings used by ``nf events``.

Record file: a plain msgpack stream of ``[topic, event]`` arrays, one per event, each written with
a single ``write`` and flushed, so a file cut at any moment holds only whole records (a torn tail
after a crash is ignored by the reader and reported).
"""

from __future__ import annotations

import errno
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgpack
import zmq
import zmq.auth

from nf.curve import make_client

POLL_MS = 200  # how often a waiting collector checks its stop conditions
MAX_EVENT_BYTES = 1 << 20  # larger events are not ours: skipped and counted


@dataclass
class StopFlag:
    """Set by SIGINT/SIGTERM (see ``stop_on_signals``) or by a limit; polled by the loops."""

    stopped: bool = False
    signal: int | None = None

    def __call__(self, signum: int = 0, frame: Any = None) -> None:
        self.stopped = True
        self.signal = signum or None


@contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Turn Ctrl-C/SIGTERM into ``flag.stopped`` so a record is never cut half-written."""
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals can only be handled in the main thread; limits still apply
        return
    old = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def curve_client_keys(
    server_key: str | None, client_key: str | None
) -> tuple[bytes, bytes, bytes] | None:
    """(server public, client public, client secret) from key files, or None for no CURVE."""
    if server_key is None and client_key is None:
        return None
    if server_key is None or client_key is None:
        raise ValueError("CURVE needs both --server-key (public) and --client-key (*.key_secret)")
    server_pub, _ = zmq.auth.load_certificate(server_key)
    pub, sec = zmq.auth.load_certificate(client_key)
    if sec is None:
        raise ValueError(f"{client_key} holds no secret key (use the *.key_secret file)")
    return server_pub, pub, sec


def subscriber(
    ctx: zmq.Context[Any],
    endpoint: str,
    topics: list[str] | tuple[str, ...] = (),
    curve: tuple[bytes, bytes, bytes] | None = None,
    rcvhwm: int = 100_000,
) -> zmq.Socket[Any]:
    """A SUB socket connected to ``endpoint``, subscribed to each topic prefix (all if none)."""
    sock = ctx.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = rcvhwm
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_EVENT_BYTES)
    if curve is not None:
        make_client(sock, *curve)
    for topic in topics or ("",):
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    sock.connect(endpoint)
    return sock


@dataclass
class Receiver:
    """Receives ``(topic, event)`` until a limit or the stop flag; counts malformed messages."""

    sock: zmq.Socket[Any]
    stop: StopFlag = field(default_factory=StopFlag)
    count: int | None = None
    duration: float | None = None
    clock: Callable[[], float] = time.monotonic
    received: int = 0
    malformed: int = 0

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        deadline = None if self.duration is None else self.clock() + self.duration
        while not self.stop.stopped:
            if self.count is not None and self.received >= self.count:
                return
            wait = POLL_MS
            if deadline is not None:
                left = deadline - self.clock()
                if left <= 0:
                    return
                wait = min(wait, max(1, int(left * 1000)))
            try:
                if not self.sock.poll(wait):
                    continue
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            except zmq.ZMQError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            decoded = decode_event(frames)
            if decoded is None:
                self.malformed += 1
                continue
            self.received += 1
            yield decoded


def decode_event(frames: list[bytes]) -> tuple[str, dict[str, Any]] | None:
    if len(frames) != 2:
        return None
    try:
        topic = frames[0].decode("utf-8")
        event = msgpack.unpackb(frames[1], raw=False, strict_map_key=False)
    except Exception:  # noqa: BLE001 - a collector skips what it cannot read
        return None
    if not isinstance(event, dict):
        return None
    return topic, event


class GapTracker:
    """Per-instance ``seq`` bookkeeping: how many events a collector missed (and restarts)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.missed: dict[str, int] = {}
        self.restarts = 0

    def see(self, event: dict[str, Any]) -> int:
        """Record ``event``'s seq; returns how many events were missed just before it."""
        seq = event.get("seq")
        if not isinstance(seq, int):
            return 0
        instance = str(event.get("instance"))
        last = self.last.get(instance)
        self.last[instance] = seq
        if last is None:
            return 0
        if seq <= last:  # the instance restarted (or replays): start counting afresh
            self.restarts += 1
            return 0
        gap = seq - last - 1
        if gap:
            self.missed[instance] = self.missed.get(instance, 0) + gap
        return gap

    @property
    def total_missed(self) -> int:
        return sum(self.missed.values())


# ---- the record file -------------------------------------------------------------------------
class RecordWriter:
    """Appends ``[topic, event]`` records; each is one write, flushed at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self.written = 0

    def write(self, topic: str, event: dict[str, Any]) -> None:
        self._file.write(msgpack.packb([topic, event], use_bin_type=True))
        self._file.flush()
        self.written += 1

    def close(self) -> None:
        self._file.close()


@dataclass
class RecordFile:
    """Reads a record file; ``torn_tail`` tells whether it ended inside a record."""

    path: Path
    torn_tail: bool = False
    skipped: int = 0

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        with open(self.path, "rb") as f:
            unpacker = msgpack.Unpacker(
                f, raw=False, strict_map_key=False, max_buffer_size=64 * MAX_EVENT_BYTES
            )
            while True:
                try:
                    item = unpacker.unpack()
                except msgpack.OutOfData:
                    self.torn_tail = unpacker.tell() != self.path.stat().st_size
                    return
                except Exception:  # noqa: BLE001 - corrupt data: stop, report what we read
                    self.torn_tail = True
                    return
                if (
                    isinstance(item, list)
                    and len(item) == 2
                    and isinstance(item[0], str)
                    and isinstance(item[1], dict)
                ):
                    yield item[0], item[1]
                else:
                    self.skipped += 1


# ---- rendering -------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def json_line(topic: str, event: dict[str, Any]) -> str:
    return json.dumps({"topic": topic, **jsonable(event)}, sort_keys=False, default=str)


# The fields each topic shows in the table view, in order; other topics show every field.
TABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "tls.handshake": (
        "conn",
        "client",
        "sni",
        "offered",
        "outcome",
        "method",
        "reason",
        "cipher",
        "tickets_issued",
        "ticket_key",
        "duration_us",
    ),
    "tls.alert": ("conn", "direction", "level", "description", "reason"),
    "tls.cache": ("profile", "action", "session_id", "age_s"),
    "tls.tickets": ("profile", "action", "key"),
    "tcp.flow": ("conn", "action", "client", "vip", "bytes_in", "bytes_out", "reason"),
    "nf.profile": ("profile", "changed", "source", "version"),
}
ENVELOPE_FIELDS = ("v", "ts", "seq", "instance", "gen")


def _short(value: Any, width: int = 48) -> str:
    if isinstance(value, bytes):
        value = value.hex()
    if isinstance(value, float):
        text = f"{value:.3f}"
    elif isinstance(value, list):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def table_row(topic: str, event: dict[str, Any]) -> str:
    ts = event.get("ts")
    when = (
        time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, int | float) else "--:--:--"
    )
    head = f"{when} {event.get('seq', '-'):>7} {topic:<14}"
    if topic == "nf.stats":
        counters = event.get("counters") or {}
        shown = " ".join(f"{k}={v}" for k, v in list(counters.items())[:12])
        return f"{head} {shown}"
    names = TABLE_FIELDS.get(topic) or tuple(k for k in event if k not in ENVELOPE_FIELDS)
    parts = [f"{k}={_short(event[k])}" for k in names if event.get(k) not in (None, "", [])]
    return f"{head} {' '.join(parts)}"


TABLE_HEADER = f"{'time':<8} {'seq':>7} {'topic':<14} fields"

__all__ = [
    "GapTracker",
    "Receiver",
    "RecordFile",
    "RecordWriter",
    "StopFlag",
    "TABLE_HEADER",
    "curve_client_keys",
    "decode_event",
    "json_line",
    "jsonable",
    "stop_on_signals",
    "subscriber",
    "table_row",
]
