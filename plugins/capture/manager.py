"""``CaptureManager``: the runtime's captures, started from the config or live over the control
channel (``capture.start`` / ``capture.stop`` / ``capture.status``).

It is where captures attach. While at least one capture runs it sits in the packet chain (and it
leaves the chain when the last one stops, so an NF that captures nothing pays nothing per frame).
It is also the runtime's shared key-log listener (``env.shared["keylog"]``) and an event-bus
listener (behind a ``TeeBus``), and hands key log lines and ``tls.handshake`` verdicts to the
pcapng captures. Bounded (``MAX_CAPTURES``); an exception inside a capture is counted
(``capture.errors``) and stops that capture, never the loop.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.chain import Direction, PacketChain
from pipeline.errors import ConfigError
from plugins.capture.pcap import PcapCaptureStage
from plugins.capture.pcapng import PcapngCaptureStage
from plugins.capture.pcapng_blocks import RESOLUTIONS

MAX_CAPTURES = 4
FORMATS = ("pcapng", "pcap")
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MIN_MAX_BYTES = 4096
MAX_MAX_BYTES = 1 << 40
MAX_FILES = 1000


class CaptureManager:
    def __init__(
        self,
        packet_chain: PacketChain,
        *,
        counters: collections.Counter[str] | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_captures: int = MAX_CAPTURES,
    ) -> None:
        self.packet_chain = packet_chain
        self.counters = counters if counters is not None else collections.Counter()
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.max_captures = max_captures
        self.captures: dict[Path, PcapngCaptureStage | PcapCaptureStage] = {}
        self._items: tuple[tuple[Path, PcapngCaptureStage | PcapCaptureStage], ...] = ()
        # As the shared key log (env.shared["keylog"]): False while no capture embeds secrets,
        # so TLS connections opened meanwhile do not even format their key log lines.
        self.active = False
        self._pcapng = False  # a pcapng capture runs: it takes tls.handshake events (wants)

    # ---- control ----------------------------------------------------------------------------
    def start(
        self,
        path: str,
        format: str = "pcapng",
        max_bytes: int = DEFAULT_MAX_BYTES,
        files: int = 1,
        secrets: bool = True,
        comments: bool = True,
        resolution: str = "us",
    ) -> dict[str, Any]:
        """Start writing every frame to ``path``; returns the capture's status. Invalid arguments
        raise ``ConfigError`` naming ``capture.<key>``."""
        if format not in FORMATS:
            raise ConfigError("capture.format", f"must be one of {', '.join(FORMATS)}", format)
        _check_int("capture.max_bytes", max_bytes, MIN_MAX_BYTES, MAX_MAX_BYTES)
        _check_int("capture.files", files, 1, MAX_FILES)
        if format == "pcap" and files != 1:
            raise ConfigError("capture.files", "ring files need format pcapng", files)
        if resolution not in RESOLUTIONS:
            raise ConfigError(
                "capture.resolution", f"must be one of {', '.join(RESOLUTIONS)}", resolution
            )
        if not path:
            raise ConfigError("capture.path", "must name a file", path)
        key = Path(path).resolve()
        if key in self.captures:
            raise ConfigError("capture.path", "a capture is already writing this file", path)
        if len(self.captures) >= self.max_captures:
            raise ConfigError("capture.path", f"at most {self.max_captures} captures at once", path)
        ts_offset = self.wall_clock() - self.monotonic()
        stage: PcapngCaptureStage | PcapCaptureStage
        try:
            if format == "pcapng":
                stage = PcapngCaptureStage(
                    key,
                    max_bytes=max_bytes,
                    files=files,
                    secrets=secrets,
                    comments=comments,
                    resolution=resolution,
                    ts_offset=ts_offset,
                    counters=self.counters,
                )
            else:
                stage = PcapCaptureStage(key, max_bytes=max_bytes, ts_offset=ts_offset)
        except OSError as exc:
            raise ConfigError("capture.path", f"cannot open: {exc.strerror}", path) from None
        self.captures[key] = stage
        self.counters["capture.started"] += 1
        self._changed()
        return self._status(key, stage)

    def stop(self, path: str | None = None) -> dict[str, Any]:
        """Stop the capture writing ``path`` (every capture when None); returns their status."""
        if path is None:
            keys = list(self.captures)
        else:
            key = Path(path).resolve()
            if key not in self.captures:
                raise ConfigError("capture.path", "no capture is writing this file", path)
            keys = [key]
        stopped = []
        for key in keys:
            stage = self.captures.pop(key)
            stage.close()
            stopped.append(self._status(key, stage))
        self._changed()
        return {"stopped": stopped}

    def status(self) -> dict[str, Any]:
        return {"captures": [self._status(k, s) for k, s in self.captures.items()]}

    def close(self) -> None:
        self.stop()

    # ---- timers ---------------------------------------------------------------------------
    def poll_at(self) -> float | None:
        """Earliest monotonic deadline of the captures (late verdicts, idle flush)."""
        times = [
            t
            for stage in self.captures.values()
            if isinstance(stage, PcapngCaptureStage) and (t := stage.poll_at()) is not None
        ]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for key, stage in self._items:
            if isinstance(stage, PcapngCaptureStage):
                try:
                    stage.handle_timer(now)
                except Exception:  # noqa: BLE001
                    self._broken(key)

    # ---- the taps ---------------------------------------------------------------------------
    def on_frame(self, frame: bytes | memoryview, direction: Direction, now: float) -> bool:
        for key, stage in self._items:
            try:
                stage.on_frame(frame, direction, now)
            except Exception:  # noqa: BLE001 - a bug in a capture stops it, never the loop
                self._broken(key)
        return True

    def wants(self, topic: str) -> bool:
        """Only ``tls.handshake``, and only while a pcapng capture runs (its verdict comments)."""
        return self._pcapng and topic == "tls.handshake"

    def emit(self, topic: str, fields: Mapping[str, Any]) -> None:
        if topic != "tls.handshake":
            return
        for key, stage in self._items:
            if isinstance(stage, PcapngCaptureStage):
                try:
                    stage.emit(topic, fields)
                except Exception:  # noqa: BLE001
                    self._broken(key)

    def write_line(self, line: str) -> None:
        for key, stage in self._items:
            if isinstance(stage, PcapngCaptureStage):
                try:
                    stage.write_line(line)
                except Exception:  # noqa: BLE001
                    self._broken(key)

    def _broken(self, key: Path) -> None:
        self.counters["capture.errors"] += 1
        stage = self.captures.pop(key, None)
        if stage is not None:
            try:
                stage.close()
            except Exception:  # noqa: BLE001
                pass
        self._changed()

    def _changed(self) -> None:
        """In the packet chain exactly while something captures, first (it records every frame
        received, and every frame sent before a later stage could drop it)."""
        self._items = tuple(self.captures.items())
        self._pcapng = any(
            isinstance(stage, PcapngCaptureStage) for stage in self.captures.values()
        )
        self.active = any(
            isinstance(stage, PcapngCaptureStage) and stage.secrets
            for stage in self.captures.values()
        )
        stages = self.packet_chain.stages
        if self.captures and self not in stages:
            stages.insert(0, self)
        elif not self.captures and self in stages:
            stages.remove(self)

    def _status(self, key: Path, stage: PcapngCaptureStage | PcapCaptureStage) -> dict[str, Any]:
        if isinstance(stage, PcapngCaptureStage):
            return stage.status()
        return {
            "path": str(key),
            "format": "pcap",
            "active": stage._writer is not None,
            "full": stage.full,
            "max_bytes": stage.max_bytes,
            "counters": dict(sorted(stage.counters.items())),
        }


def _check_int(path: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, "must be an integer", value)
    if not lo <= value <= hi:
        raise ConfigError(path, f"must be between {lo} and {hi}", value)


__all__ = ["FORMATS", "MAX_CAPTURES", "CaptureManager"]
