"""The runtime: builds the pipeline a config describes and holds it together for the loop.

It owns the frame port (TAP, pcap replay or memory), the host stack with its TCP stack and the
virtual servers' stream chains, the TLS profile registry, and the ZeroMQ control/event sockets.
It implements the control channel's ``RuntimeView`` (status, counters, flows, vips).
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass, field
from typing import Any

from nf import __version__
from nf.config import Config
from pipeline.chain import PacketChain, PluginEnv, StreamChain, build_chain
from pipeline.events import EventBus, NullBus

TLS_REFRESH = 1.0  # seconds: the longest a frames-only wake reuses the TLS and stats deadlines


class RuntimeError_(Exception):
    """A one-line reason the runtime could not start."""


@dataclass
class Clocks:
    """Injected clocks: monotonic ``now`` for the data path, wall time and CPU time for events."""

    monotonic: Any = time.monotonic
    wall: Any = time.time
    cpu: Any = time.process_time


@dataclass
class Runtime:
    config: Config
    port: Any = None  # FrameSource/FrameSink
    clocks: Clocks = field(default_factory=Clocks)
    rng: Any = os.urandom
    counters: collections.Counter[str] = field(default_factory=collections.Counter)
    bus: EventBus = field(default_factory=NullBus)
    zmq_context: Any = None
    started_at: float = 0.0

    def __post_init__(self) -> None:
        self.tls: Any = None
        self.tcp: Any = None
        self.host: Any = None
        self.exporter: Any = None
        self.control: Any = None
        self.subscriber: Any = None
        self.backends: Any = None  # nf.backends.KernelConnector (forward's backend sockets)
        self.capture: Any = None  # plugins.capture.manager.CaptureManager
        self.packet_chain = PacketChain()
        self.listeners: dict[tuple[bytes, int], StreamChain] = {}
        self._closers: list[Any] = []
        self._slow_at: float | None = None  # TLS profiles' and exporter's, at the last full ask
        self._slow_asked = float("-inf")

    # ---- building ----------------------------------------------------------------------------
    def build(self) -> Runtime:
        """Build everything except the frame port (``attach`` does that)."""
        cfg = self.config
        self.started_at = self.clocks.monotonic()
        if cfg.control is not None:
            self._build_control_bus()
        if cfg.profiles:
            from plugins.tls.registry import ProfileRegistry

            self.tls = ProfileRegistry.from_config(
                cfg, bus=self.bus, rng=self.rng, wall_clock=self.clocks.wall
            )
        self._build_capture()
        from nf.backends import KernelConnector
        from pipeline.host import HostStack
        from pipeline.tcp import TcpStack

        self.backends = KernelConnector(self.counters, clock=self.clocks.monotonic)

        self.tcp = TcpStack(
            {},
            cfg.tcp,
            counters=self.counters,
            bus=self.bus,
            rng=self.rng,
            mtu=cfg.interface.mtu,
            gso=cfg.interface.offload and cfg.interface.kind == "tap",
        )
        self.host = HostStack(
            cfg.interface.mac,
            [a.packed for a in cfg.vips],
            cfg.interface.mtu,
            counters=self.counters,
            bus=self.bus,
            tcp=self.tcp,
            packet_chain=self.packet_chain,
        )
        self.tcp.set_listeners(self._build_listeners())
        return self

    def _build_capture(self) -> None:
        """Captures (config and live ``capture.*`` ops) go through one manager: it joins the
        packet chain while a capture runs, sees every event (``TeeBus``: verdicts for comments)
        and every TLS key log line (``env.shared["keylog"]``: secrets for the pcapng DSB)."""
        from pipeline.errors import ConfigError
        from pipeline.events import TeeBus
        from plugins.capture.manager import CaptureManager

        cap = self.config.capture
        self.capture = CaptureManager(
            self.packet_chain,
            counters=self.counters,
            wall_clock=self.clocks.wall,
            monotonic=self.clocks.monotonic,
        )
        self.bus = TeeBus(self.bus, self.capture)
        self._shared = {"keylog": self.capture}
        self._closers.append(self.capture)
        try:
            if cap.pcap:
                key = "capture.pcap"
                self.capture.start(cap.pcap, format="pcap", max_bytes=cap.max_bytes)
            if cap.pcapng:
                key = "capture.pcapng"
                self.capture.start(
                    cap.pcapng,
                    max_bytes=cap.max_bytes,
                    files=cap.files,
                    secrets=cap.secrets,
                    comments=cap.comments,
                    resolution=cap.resolution,
                )
        except ConfigError as exc:  # name the config key, not the op argument
            path = key if exc.path == "capture.path" else exc.path
            raise ConfigError(path, exc.message, exc.value) from None

    def _plugin_env(self, vs: Any) -> PluginEnv:
        shared: dict[str, Any] = getattr(self, "_shared", {})
        if self.tls is not None:
            shared["tls"] = self.tls
        if self.backends is not None:
            shared["connector"] = self.backends
        self._shared = shared
        return PluginEnv(
            config=self.config,
            vs=vs.options,
            bus=self.bus,
            rng=self.rng,
            wall_clock=self.clocks.wall,
            cpu_clock=self.clocks.cpu,
            shared=shared,
        )

    def _build_listeners(self) -> dict[tuple[bytes, int], StreamChain]:
        listeners: dict[tuple[bytes, int], StreamChain] = {}
        for i, vs in enumerate(self.config.virtual_servers):
            chain = build_chain(
                list(vs.chain),
                self._plugin_env(vs),
                path=f"virtual_servers[{i}].chain",
                name=vs.name,
            )
            self.packet_chain.stages.extend(chain.packet_stages)  # packet stages named in chains
            for addr in vs.addresses:
                listeners[(addr.packed, vs.port)] = chain
        self.listeners = listeners
        return listeners

    def _build_control_bus(self) -> None:
        import zmq

        from nf.control import ControlServer
        from nf.exporter import FLUSH_DELAY, ZmqEventBus
        from nf.ops import build_ops

        ctl = self.config.control
        self.zmq_context = self.zmq_context or zmq.Context()
        self.exporter = ZmqEventBus(
            self.zmq_context,
            ctl.events,
            instance=self.config.instance,
            gen=self.gen,
            config=ctl,
            wall_clock=self.clocks.wall,
            monotonic=self.clocks.monotonic,
            flush_delay=FLUSH_DELAY,  # events sent in batches by the loop (see nf.exporter)
        )
        self.bus = self.exporter
        self.control = ControlServer(self.zmq_context, ctl.endpoint, build_ops(self), config=ctl)
        if getattr(ctl, "subscribe", None):
            from nf.push import FleetSubscriber

            self.subscriber = FleetSubscriber(self.zmq_context, ctl, self)

    def attach(self) -> None:
        """Open the frame port the config names (TAP, pcap replay) unless one was given."""
        if self.port is None:
            iface = self.config.interface
            if iface.kind == "tap":
                from pipeline.io.tap import TapPort

                self.port = TapPort(
                    iface.name,
                    mtu=iface.mtu,
                    netns=iface.netns,
                    peer_address=iface.peer_address,
                    offload=iface.offload,
                ).open()
            elif iface.kind == "pcap":
                from pipeline.io.pcap import PcapSource

                assert iface.path is not None  # enforced by the config loader
                self.port = PcapSource(iface.path)
            else:
                from pipeline.io.memory import MemoryPort

                self.port = MemoryPort()

    # ---- RuntimeView for the control channel -----------------------------------------------
    def gen(self) -> int:
        return int(self.tls.gen) if self.tls is not None else 0

    @property
    def endpoint_is_secure(self) -> bool:
        return bool(getattr(self.control, "is_secure", False))

    def status(self) -> dict[str, Any]:
        describe = getattr(self.port, "describe", None)
        return {
            "version": __version__,
            "instance": self.config.instance,
            "uptime_s": round(self.clocks.monotonic() - self.started_at, 3),
            "config": str(self.config.source) if self.config.source else None,
            "interfaces": [describe()] if describe else [],
            "gen": self.gen(),
        }

    def flows(self) -> list[dict[str, Any]]:
        return list(self.tcp.flows()) if self.tcp is not None else []

    def vips(self) -> list[dict[str, Any]]:
        out = []
        for a in self.config.vips:
            ports = [
                {"port": vs.port, "name": vs.name, "chain": list(vs.chain)}
                for vs in self.config.virtual_servers
                if a in vs.addresses
            ]
            out.append({"address": str(a), "version": a.version, "virtual_servers": ports})
        return out

    # ---- timers and shutdown ---------------------------------------------------------------
    def poll_at(self, now: float | None = None, *, full: bool = True) -> float | None:
        """Earliest monotonic deadline of any component (wall-clock timers converted).

        Wall-clock deadlines are converted against the caller's ``now`` so that a due one
        equals ``now`` (converting against a fresh clock read would always land just past it,
        and the loop would spin without ever firing it). The loop asks at most once per wake
        (``nf.loop``): no temporary lists here, and the wall clock is read once.

        ``full=False`` (the loop, on a wake that only carried frames) reuses the TLS profiles'
        deadline from the last full ask if it is less than ``TLS_REFRESH`` old: asking them
        costs ~4 µs in the running NF (their session caches and ticket rings). Nothing a frame does can arm a TLS timer sooner than that: a cached session
        expires ``cache_timeout`` (>= 1 s) after its ``put``, a key rotated by ``seal`` is
        rotated again ``ticket_key_rotation`` (>= 1 s) later and the one it retired is erased
        a ticket lifetime (>= 1 s) later. A session taken or refreshed by a frame can move the
        cache's sweep (``next_expiry``: the least recently used entry) earlier; that sweep then
        runs up to ``TLS_REFRESH`` late, which only delays freeing memory and the ``tls.cache``
        expired event: ``get``/``take`` check a session's age themselves, so an expired session
        is never served. Control requests, pushes and fired timers ask in full. The exporter's
        deadline (the next ``nf.stats``) goes with them: only its own tick, a fired timer,
        moves it.
        """
        if now is None:
            now = self.clocks.monotonic()
        first: float | None = None
        host = self.host
        if host is not None:
            first = host.poll_at()
        if full or now - self._slow_asked >= TLS_REFRESH:
            self._slow_asked = now
            self._slow_at = self._slow_poll_at(now)
        t = self._slow_at
        if t is not None and (first is None or t < first):
            first = t
        backends = self.backends
        if backends is not None:
            t = backends.poll_at()
            if t is not None and (first is None or t < first):
                first = t
        # The capture manager is in the packet chain exactly while something captures (and
        # only a capture has timers there): with an empty chain it is not asked (~1 µs a wake).
        capture = self.capture
        if capture is not None and self.packet_chain.stages:
            t = capture.poll_at()
            if t is not None and (first is None or t < first):
                first = t
        return first

    def _slow_poll_at(self, now: float) -> float | None:
        """The TLS profiles' deadline (wall clock, converted) and the exporter's: what frames do
        not move (see ``poll_at``)."""
        first: float | None = None
        if self.tls is not None:
            wall_first: float | None = None
            for profile in self.tls:
                w = profile.poll_at()
                if w is not None and (wall_first is None or w < wall_first):
                    wall_first = w
            if wall_first is not None:
                first = now + max(0.0, wall_first - self.clocks.wall())
        exporter = self.exporter
        if exporter is not None:
            t = exporter.poll_at()
            if t is not None and (first is None or t < first):
                first = t
        return first

    def handle_timers(self, now: float) -> None:
        """Fire the components whose deadline has come (each asked again: the one that made the
        loop call may be the only one due). ``now`` is the loop's; wall-clock timers are due
        when their deadline is at or before the wall clock read here, as ``poll_at`` reckons.

        A TCP flow a stage wrote to outside the TCP stack's own call (backend data, a timer)
        makes the TCP stack due at once, so this can run on many wakes (a relay's); components
        with nothing due cost a ``poll_at`` here, not a run of their timer code (the exporter's
        tick alone reads its socket). Under ``s_time`` it hardly runs: a stage's answer to a
        segment goes out with that segment's processing."""
        backends = self.backends
        if backends is not None:  # first: a backend error it reports may write to a flow
            t = backends.poll_at()
            if t is not None and t <= now:
                backends.handle_timer(now)
        if self.host is not None:
            self.host.handle_timer(now)  # checks its own queue and transport
        capture = self.capture
        if capture is not None:
            t = capture.poll_at()
            if t is not None and t <= now:
                capture.handle_timer(now)
        if self.tls is not None:
            wall = self.clocks.wall()
            for profile in self.tls:
                w = profile.poll_at()
                if w is not None and w <= wall:
                    profile.handle_timer(wall)
        exporter = self.exporter
        if exporter is not None:
            t = exporter.poll_at()
            if t is not None and t <= now:
                exporter.tick(now, self.stats)

    def stats(self) -> dict[str, Any]:
        counters = dict(self.counters)
        if getattr(self.port, "write_drops", 0):
            counters["drop.tx_busy"] = self.port.write_drops
        return counters

    def close(self) -> None:
        for closer in (
            *self._closers,
            self.backends,
            self.subscriber,
            self.control,
            self.exporter,
        ):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 - shutdown must release everything else
                    pass
        if self.port is not None:
            self.port.close()
            self.port = None
        if self.zmq_context is not None:
            self.zmq_context.term()
            self.zmq_context = None
