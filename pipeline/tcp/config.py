"""``[tcp]`` configuration: a frozen dataclass validated from its TOML table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class TcpConfig:
    """Every bound and timer of the TCP endpoint and flow table (times in seconds)."""

    time_wait: float = 2.0
    max_flows: int = 65536
    syn_backlog: int = 1024
    # SYNs per second that do not complete their handshake, past which SYN cookies are used
    syn_cookie_threshold: float = 1000.0
    syn_cookies: bool = True
    idle_timeout: float = 300.0
    max_retries: int = 8  # retransmissions of one segment before giving up (abort + event)
    max_syn_retries: int = 5
    rto_initial: float = 1.0
    rto_min: float = 0.2
    rto_max: float = 60.0
    recv_buffer: int = 262144  # bytes the receive window may announce
    send_buffer: int = 262144  # bytes queued toward the peer before the app stops being fed
    send_buffer_hard: int = 4194304  # queued bytes past which the flow is aborted
    ooo_max_bytes: int = 262144  # out-of-order bytes kept per flow
    ooo_max_segments: int = 256  # out-of-order holes/segments kept per flow
    overlap_history: int = 65536  # delivered bytes kept to check retransmitted data against
    delayed_ack: float = 0.040
    keepalive: float = 0.0  # idle seconds before a keep-alive probe; 0 = off
    keepalive_probes: int = 5
    window_scaling: bool = True
    sack: bool = True
    timestamps: bool = True
    initial_window: int = 10  # segments (RFC 6928)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], path: str = "tcp") -> TcpConfig:
        """Validate a TOML table; errors name ``path.key`` and the offending value."""
        if not isinstance(table, Mapping):
            raise ConfigError(path, "must be a table", table)
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(
                    f"{path}.{key}", f"unknown key (known: {', '.join(known)})", value
                )
            default = getattr(cls, key)
            where = f"{path}.{key}"
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(where, "must be true or false", value)
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(where, "must be an integer", value)
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(where, "must be a number", value)
                value = float(value)
            values[key] = value
        cfg = cls(**values)
        cfg._check(path)
        return cfg

    def _check(self, path: str) -> None:
        ranges: dict[str, tuple[float, float]] = {
            "time_wait": (0.0, 240.0),
            "max_flows": (1, 10_000_000),
            "syn_backlog": (1, 10_000_000),
            "syn_cookie_threshold": (0.0, 1e9),
            "idle_timeout": (0.001, 1e7),
            "max_retries": (1, 64),
            "max_syn_retries": (1, 64),
            "rto_initial": (0.001, 600.0),
            "rto_min": (0.001, 600.0),
            "rto_max": (0.001, 3600.0),
            "recv_buffer": (1024, 1 << 30),
            "send_buffer": (1024, 1 << 30),
            "send_buffer_hard": (1024, 1 << 31),
            "ooo_max_bytes": (0, 1 << 30),
            "ooo_max_segments": (0, 1 << 20),
            "overlap_history": (0, 1 << 30),
            "delayed_ack": (0.0, 0.5),
            "keepalive": (0.0, 1e7),
            "keepalive_probes": (1, 1000),
            "initial_window": (1, 100),
        }
        for key, (lo, hi) in ranges.items():
            v = getattr(self, key)
            if not lo <= v <= hi:
                raise ConfigError(f"{path}.{key}", f"must be between {lo} and {hi}", v)
        if self.rto_min > self.rto_max:
            raise ConfigError(f"{path}.rto_min", "must not exceed rto_max", self.rto_min)
        if self.send_buffer_hard < self.send_buffer:
            raise ConfigError(
                f"{path}.send_buffer_hard", "must be at least send_buffer", self.send_buffer_hard
            )


__all__ = ["TcpConfig"]
