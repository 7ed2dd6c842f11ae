"""``tls:<profile>``: the TLS termination stream stage.

``TlsPlugin(arg, env)`` is built once per virtual server; it finds the profile's
``ProfileRuntime`` in the shared ``ProfileRegistry`` (``env.shared["tls"]``, created from
``env.config.profiles`` when absent) and a cached :class:`CertResolver` per profile. Each
connection gets a :class:`TlsStage` wrapping the next stage: decrypted bytes go to
``next_stage.receive_data``; the next stage writes through an encrypting ``Downstream``. The next
stage is opened only once the handshake completed, after the TLS facts (``tls_version``,
``tls_cipher``, ``tls_resumed``, ``tls_method``, ``tls_session_id``, ``tls_sni``, ``tls_alpn``)
are in ``flow.facts``. Every ClientHello yields one ``tls.handshake`` event (a connection that
ends or times out mid-handshake gets a failed one: ``connection_<reason>``, ``handshake_timeout``);
every alert sent or received one ``tls.alert`` event. A handshake must complete within
``HANDSHAKE_TIMEOUT`` seconds of the TCP open (``poll_at``/``handle_timer``). ``cpu_us`` counts the
process CPU time (``env.cpu_clock``) spent in the engine until the handshake completed; the clock
is read only while someone wants ``tls.handshake`` events (a collector subscribed, a capture
running: ``pipeline.events.wants``), because a process CPU clock is a system call (~0.6 µs, four
per handshake): a collector that subscribes in the middle of a handshake gets the part after it.
The key log
file writer (``profile.keylog``) lives here, not in the engine; lines also go to the runtime's
shared key-log listener ``env.shared["keylog"]`` when there is one.
"""

from __future__ import annotations

from typing import Any

from pipeline.chain import Downstream, FlowInfo, PluginEnv, StreamStage
from pipeline.events import wants
from plugins.tls.certs import CertResolver
from plugins.tls.keylog import KeyLog, KeyLogTee
from plugins.tls.registry import ProfileRegistry
from plugins.tls.resumption import ProfileRuntime
from plugins.tls.server import (
    AlertReceived,
    AlertSent,
    ApplicationData,
    CloseNotify,
    HandshakeComplete,
    HandshakeFailed,
    HandshakeInfo,
    TlsServerConnection,
)

#: Bound on events handled per call (each ``receive_data`` produces at most a few per record).
MAX_EVENTS_PER_CALL = 1 << 16
#: Seconds a connection may take from TCP open to a completed handshake (slow-loris bound).
HANDSHAKE_TIMEOUT = 30.0


class FileKeyLog:
    """Appends NSS key log lines to a file (opened per line: rare, and survives log rotation)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors = 0

    def write_line(self, line: str) -> None:
        try:
            with open(self.path, "a", encoding="ascii") as f:
                f.write(line + "\n")
        except OSError:
            self.errors += 1  # counted, never fatal to the connection


class TlsPlugin:
    """``tls:<profile>``; ``arg`` names the profile."""

    def __init__(self, arg: str | None, env: PluginEnv) -> None:
        if not arg:
            raise ValueError("tls needs a profile name: tls:<profile>")
        registry = env.shared.get("tls")
        if registry is None:
            config = env.config
            registry = ProfileRegistry(
                getattr(config, "profiles", {}) or {},
                bus=env.bus,
                rng=env.rng,
                wall_clock=env.wall_clock,
                base_dir=getattr(config, "base_dir", None),
            )
            env.shared["tls"] = registry
        try:
            self.runtime: ProfileRuntime = registry.get(arg)
        except KeyError:
            raise ValueError(f"no TLS profile named {arg!r}") from None
        self.env = env
        self.registry = registry
        self._resolvers: dict[str, tuple[Any, CertResolver]] = env.shared.setdefault(
            "tls.resolvers", {}
        )
        self._keylogs: dict[str, FileKeyLog] = env.shared.setdefault("tls.keylogs", {})
        self.connections = 0

    def resolver(self) -> CertResolver:
        """The profile's resolver, rebuilt only when its certificates changed (live set)."""
        profile = self.runtime.profile
        cached = self._resolvers.get(profile.name)
        if cached is None or cached[0] is not profile.certs:
            cached = (profile.certs, CertResolver.from_pairs(profile.certs))
            self._resolvers[profile.name] = cached
        return cached[1]

    def keylog(self) -> KeyLog | None:
        """The profile's key log file and/or the runtime's shared listener
        (``env.shared["keylog"]``, e.g. a capture embedding the secrets), skipped while it says
        it wants no lines (``active`` false) so the engine formats none."""
        shared: KeyLog | None = self.env.shared.get("keylog")
        if shared is not None and not getattr(shared, "active", True):
            shared = None
        path = self.runtime.profile.keylog
        if not path:
            return shared
        if path not in self._keylogs:
            self._keylogs[path] = FileKeyLog(path)
        if shared is None:
            return self._keylogs[path]
        return KeyLogTee(self._keylogs[path], shared)

    def new_stage(self, next_stage: StreamStage | None) -> StreamStage:
        if next_stage is None:
            raise ValueError("tls must be followed by another stage (e.g. http or echo)")
        return TlsStage(self, next_stage)


class _Encrypting:
    """The Downstream the next stage writes to: application data through the TLS connection.

    ``_stage`` is None once the flow is closed: the next stage holds this object and we hold
    the next stage, and that cycle kept a closed connection's state (engine, TCP endpoint,
    stages) alive until a garbage collection. Writes after the close did nothing before either
    (the TCP endpoint ignores them)."""

    __slots__ = ("_stage",)

    def __init__(self, stage: TlsStage) -> None:
        self._stage: TlsStage | None = stage

    def send(self, data: bytes) -> None:
        stage = self._stage
        if stage is not None:
            stage.app_send(data)

    def close(self) -> None:
        stage = self._stage
        if stage is not None:
            stage.app_close()

    def abort(self, reason: str) -> None:
        stage = self._stage
        if stage is not None and stage.down is not None:
            stage.down.abort(reason)


class TlsStage:
    """One connection's TLS termination."""

    def __init__(self, plugin: TlsPlugin, next_stage: StreamStage) -> None:
        self.plugin = plugin
        self.env = plugin.env
        self.next_stage = next_stage
        self.down: Downstream | None = None
        self.flow: FlowInfo | None = None
        self.conn: TlsServerConnection | None = None
        self.next_open = False
        self.reported = False
        self.hs_start: float | None = None
        self.cpu = 0.0
        self.dropped_app_bytes = 0
        self.deadline: float | None = None
        self.encrypting: _Encrypting | None = None

    # ---- StreamStage ---------------------------------------------------------------------
    def on_open(self, flow: FlowInfo, down: Downstream, now: float) -> None:
        self.flow, self.down = flow, down
        p = self.plugin
        p.connections += 1
        self.conn = TlsServerConnection(p.runtime, p.resolver(), self.env.rng, p.keylog())
        self.deadline = now + HANDSHAKE_TIMEOUT

    def receive_data(self, data: bytes, now: float) -> None:
        conn = self.conn
        if conn is None:
            return
        wall = self.env.wall_clock()
        if conn.handshake_complete:
            conn.receive_data(data, wall)
        else:
            if self.hs_start is None:
                self.hs_start = wall
            if wants(self.env.bus, "tls.handshake"):  # cpu_us: only for someone who reads it
                c0 = self.env.cpu_clock()
                conn.receive_data(data, wall)
                self.cpu += self.env.cpu_clock() - c0
            else:
                conn.receive_data(data, wall)
        self._process(now)

    def receive_eof(self, now: float) -> None:
        if self.next_open:
            self.next_stage.receive_eof(now)
        elif self.down is not None:
            self.down.close()

    def on_close(self, reason: str, now: float) -> None:
        conn = self.conn
        if conn is not None:
            if conn.client_hello_seen and not conn.handshake_complete and not self.reported:
                self._emit_handshake(conn.info_for_failure(f"connection_{reason}"))
            conn.connection_lost(self.env.wall_clock())
        if self.next_open:
            self.next_stage.on_close(reason, now)
        # Nothing is fed to this connection any more: let its state go now (see _Encrypting).
        self.conn = None
        self.down = None
        if self.encrypting is not None:
            self.encrypting._stage = None

    def poll_at(self) -> float | None:
        if self.next_open:
            return self.next_stage.poll_at()
        return self.deadline

    def handle_timer(self, now: float) -> None:
        if self.next_open:
            self.next_stage.handle_timer(now)
            return
        conn = self.conn
        if self.deadline is None or now < self.deadline or conn is None:
            return
        self.deadline = None
        if not self.reported:
            self._emit_handshake(conn.info_for_failure("handshake_timeout"))
        if self.down is not None:
            self.down.abort("tls_handshake_timeout")

    # ---- from the next stage -------------------------------------------------------------
    def app_send(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closed_write or not conn.handshake_complete:
            self.dropped_app_bytes += len(data)
            return
        conn.send(data)
        self._flush()

    def app_close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self._flush()
        if self.down is not None:
            self.down.close()

    # ---- internals -----------------------------------------------------------------------
    def _flush(self) -> None:
        if self.conn is not None and self.down is not None:
            out = self.conn.data_to_send()
            if out:
                self.down.send(out)

    def _process(self, now: float) -> None:
        conn = self.conn
        assert conn is not None and self.flow is not None
        for _ in range(MAX_EVENTS_PER_CALL):
            ev = conn.next_event()
            if ev is None:
                break
            if isinstance(ev, HandshakeComplete):
                self._flush()  # the server's last flight goes out before any application byte
                self._publish_facts(ev.info)
                self._emit_handshake(ev.info)
                self.next_open = True
                self.encrypting = _Encrypting(self)
                self.next_stage.on_open(self.flow, self.encrypting, now)
            elif isinstance(ev, HandshakeFailed):
                self._emit_handshake(ev.info)
            elif isinstance(ev, ApplicationData):
                if self.next_open:
                    self.next_stage.receive_data(ev.data, now)
            elif isinstance(ev, CloseNotify):
                self._flush()
                if self.next_open:
                    self.next_stage.receive_eof(now)
            elif isinstance(ev, AlertSent | AlertReceived):
                self._emit_alert(ev)
        self._flush()
        if conn.failed and self.down is not None:
            self.down.close()

    def _publish_facts(self, info: HandshakeInfo) -> None:
        assert self.flow is not None
        self.flow.facts.update(
            tls_version=info.version,
            tls_cipher=info.cipher,
            tls_resumed=info.outcome == "resumed",
            tls_method=info.method,
            tls_session_id=info.session_id,
            tls_sni=info.sni,
            tls_alpn=info.alpn,
            tls_ems=info.ems,
            tls_group=info.group,
        )

    def _emit_handshake(self, info: HandshakeInfo) -> None:
        assert self.flow is not None
        self.reported = True
        if not wants(self.env.bus, "tls.handshake"):  # no collector, no capture: not built
            return
        wall = self.env.wall_clock()
        duration = (wall - self.hs_start) if self.hs_start is not None else 0.0
        self.env.bus.emit(
            "tls.handshake",
            {
                "conn": self.flow.conn,
                "client": _addr(self.flow.client),
                "vip": _addr(self.flow.vip),
                "sni": info.sni,
                "alpn": info.alpn,
                "version": info.version,
                "cipher": info.cipher,
                "group": info.group,
                "offered": info.offered,
                "outcome": info.outcome,
                "method": info.method,
                "reason": info.reason,
                "session_id": info.session_id,
                "client_session_id": info.client_session_id,
                "tickets_issued": info.tickets_issued,
                "ticket_key": info.ticket_key,
                "ticket_age_s": info.ticket_age_s,
                "ems": info.ems,
                "duration_us": int(max(duration, 0.0) * 1e6),
                "cpu_us": int(max(self.cpu, 0.0) * 1e6),
                "history": info.history,
                "alert": info.alert,
            },
        )

    def _emit_alert(self, ev: AlertSent | AlertReceived) -> None:
        assert self.flow is not None
        sent = isinstance(ev, AlertSent)
        self.env.bus.emit(
            "tls.alert",
            {
                "conn": self.flow.conn,
                "direction": "sent" if sent else "received",
                "level": ev.level,
                "description": ev.description,
                "reason": ev.reason if isinstance(ev, AlertSent) else None,
            },
        )


def _addr(a: tuple[str, int]) -> str:
    host, port = a
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["FileKeyLog", "TlsPlugin", "TlsStage"]
