"""``forward``: relays a connection's bytes to a backend ``host:port`` (TLS offload behind ``tls``).

Configuration, on the virtual server (``env.vs``) or as the stage argument::

    [[virtual_servers]]
    name = "vs_offload"
    port = 443
    chain = ["tls:clientssl", "forward"]   # or "forward:127.0.0.1:8080"
    backend = "127.0.0.1:8080"             # IPv6: "[::1]:8080"; literal addresses only
    connect_timeout = 5.0                  # seconds
    buffer = 262144                        # bytes per direction before back-pressure

The stage is sans-IO: its backend connection comes from the runtime's connector
(``env.shared["connector"]``, ``pipeline.chain.BackendConnector``), whose callbacks arrive from
the loop. Bytes from the client are sent to the backend (buffered until it is connected);
bytes from the backend go to the client through the stage's ``Downstream``.

Back-pressure both ways: when more than ``buffer`` bytes wait for the backend, the client's TCP
connection stops being read (``FlowInfo.control.pause_reading``; its window closes) until the
backend took them; when more than ``buffer`` bytes wait for the client, the backend socket stops
being read until the client acknowledged down to half of it.

Close mapping: client EOF (FIN, or close_notify under TLS) -> the backend's write side is shut
down; backend EOF -> orderly close toward the client (TLS close_notify, then FIN); a backend that
refuses, times out or resets -> the client flow is aborted (RST) with that reason
(``backend_refused``, ``backend_timeout``, ...) in its ``tcp.flow`` closed event; the client flow
ending first (RST, timeout) aborts the backend connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.chain import (
    BackendConn,
    BackendConnector,
    Downstream,
    FlowControl,
    FlowInfo,
    PluginEnv,
    StreamStage,
)

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_BUFFER = 256 * 1024


@dataclass(frozen=True)
class ForwardConfig:
    host: str
    port: int
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    buffer: int = DEFAULT_BUFFER

    @property
    def backend(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_backend(text: Any) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:8080"`` -> (host, port); literal addresses only (the
    stage may not resolve names: that would be I/O)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"backend must be a string 'host:port' (got {text!r})")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"backend {text!r}: expected '[address]:port'")
        port_s = rest[1:]
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"backend {text!r}: expected 'host:port' ('[address]:port' for IPv6)")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"backend {text!r}: {host!r} is not an IP address") from None
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"backend {text!r}: port must be 1..65535")
    return str(addr), int(port_s)


def forward_config(arg: str | None, vs: Mapping[str, Any]) -> ForwardConfig:
    backend = arg if arg else vs.get("backend")
    if backend is None:
        raise ValueError("forward needs a backend: 'forward:host:port' or backend = 'host:port'")
    host, port = parse_backend(backend)
    timeout = vs.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
        raise ValueError(
            f"connect_timeout must be a number of seconds in (0, 600] (got {timeout!r})"
        )
    buffer = vs.get("buffer", DEFAULT_BUFFER)
    if isinstance(buffer, bool) or not isinstance(buffer, int) or not 4096 <= buffer <= 1 << 26:
        raise ValueError(f"buffer must be an integer of bytes in [4096, 64 MiB] (got {buffer!r})")
    return ForwardConfig(host, port, float(timeout), buffer)


class ForwardPlugin:
    """``forward``; the argument, when given, is the backend ``host:port``."""

    def __init__(self, arg: str | None, env: PluginEnv) -> None:
        self.config = forward_config(arg, env.vs)
        connector = env.shared.get("connector")
        if connector is None:
            raise ValueError("forward needs the runtime's backend connector (shared['connector'])")
        self.connector: BackendConnector = connector
        self.connections = 0

    def new_stage(self, next_stage: StreamStage | None) -> StreamStage:
        if next_stage is not None:
            raise ValueError("forward is an application stage and must be last in its chain")
        return ForwardStage(self)


class ForwardStage:
    """One client connection relayed to one backend connection (also its ``BackendHandler``)."""

    def __init__(self, plugin: ForwardPlugin) -> None:
        self.plugin = plugin
        self.cfg = plugin.config
        self.down: Downstream | None = None
        self.flow: FlowInfo | None = None
        self.control: FlowControl | None = None
        self.conn: BackendConn | None = None
        self.connected = False
        self.client_paused = False  # we paused reading the client (backend slow)
        self.backend_paused = False  # we paused reading the backend (client slow)
        self.client_eof = False
        self.backend_eof = False
        self.finished = False  # the client flow is closed or aborted: nothing more to do
        self.bytes_up = 0
        self.bytes_down = 0

    # ---- StreamStage (the client side) -------------------------------------------------------
    def on_open(self, flow: FlowInfo, down: Downstream, now: float) -> None:
        self.flow, self.down, self.control = flow, down, flow.control
        self.plugin.connections += 1
        flow.facts["forward_backend"] = self.cfg.backend
        self.conn = self.plugin.connector.connect(
            self.cfg.host, self.cfg.port, self, self.cfg.connect_timeout
        )

    def receive_data(self, data: bytes, now: float) -> None:
        conn = self.conn
        if conn is None or self.finished or not data:
            return
        self.bytes_up += len(data)
        conn.send(data)
        if conn.buffered >= self.cfg.buffer and not self.client_paused and self.control is not None:
            self.client_paused = True
            self.control.pause_reading()

    def receive_eof(self, now: float) -> None:
        self.client_eof = True
        if self.conn is not None:
            self.conn.close()  # SHUT_WR once the buffered bytes are out

    def on_close(self, reason: str, now: float) -> None:
        self.finished = True
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if reason in ("fin", "closed") and self.backend_eof:
            conn.close()
        else:
            conn.abort()

    def poll_at(self) -> float | None:
        return None  # the connector keeps the connect timeout

    def handle_timer(self, now: float) -> None:
        return None

    # ---- BackendHandler (from the loop) ------------------------------------------------------
    def on_connected(self, now: float) -> None:
        self.connected = True

    def on_data(self, data: bytes, now: float) -> None:
        if self.finished or self.down is None:
            return
        self.bytes_down += len(data)
        self._guard(self.down.send, data)
        control = self.control
        if control is not None and not self.backend_paused and self.conn is not None:
            if control.send_queued() >= self.cfg.buffer:
                self.backend_paused = True
                self.conn.pause_reading()
                control.notify_drained(self.cfg.buffer // 2, self._client_drained)

    def on_eof(self, now: float) -> None:
        self.backend_eof = True
        if not self.finished and self.down is not None:
            self._guard(self.down.close)

    def on_drained(self, now: float) -> None:
        if self.client_paused and not self.finished:
            self.client_paused = False
            if self.control is not None:
                self.control.resume_reading()

    def on_error(self, reason: str, now: float) -> None:
        self.conn = None
        if not self.finished and self.down is not None:
            self.finished = True
            self.down.abort(reason)

    # ---- internals ---------------------------------------------------------------------------
    def _client_drained(self, now: float) -> None:
        if self.backend_paused and self.conn is not None:
            self.backend_paused = False
            self.conn.resume_reading()

    def _guard(self, fn: Any, *args: Any) -> None:
        """A failure toward the client from a backend callback drops both sides, never the loop."""
        try:
            fn(*args)
        except Exception:  # noqa: BLE001
            self.finished = True
            if self.conn is not None:
                self.conn.abort()
                self.conn = None
            if self.down is not None:
                self.down.abort("plugin_error")


__all__ = ["ForwardConfig", "ForwardPlugin", "ForwardStage", "forward_config", "parse_backend"]
