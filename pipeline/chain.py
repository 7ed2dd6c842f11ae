"""Stage protocols and the chains that run them.

Packet stages see every frame in both directions. Stream stages see one TCP connection's bytes;
a virtual server's chain, e.g. ``["tls:clientssl", "http"]``, is built from plugins found by name
through the ``tapnf.plugins`` entry points. Each stage wraps the next one: bytes from the client
enter the first stage (``receive_data``), which passes what it makes of them to the next; bytes
toward the client go through the ``Downstream`` each stage was given in ``on_open`` (the TLS stage
hands the next stage a Downstream that encrypts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol

from pipeline.errors import ConfigError
from pipeline.events import EventBus, NullBus

Direction = Literal["in", "out"]


class PacketStage(Protocol):
    """Sees every Ethernet frame; returns False to drop it."""

    def on_frame(self, frame: bytes | memoryview, direction: Direction, now: float) -> bool: ...


class PacketChain:
    """Runs packet stages in order; a frame dropped by one stage is not shown to the next."""

    def __init__(self, stages: list[PacketStage] | None = None) -> None:
        self.stages: list[PacketStage] = list(stages or [])

    def run(self, frame: bytes | memoryview, direction: Direction, now: float) -> bool:
        for stage in self.stages:
            if not stage.on_frame(frame, direction, now):
                return False
        return True


@dataclass
class FlowInfo:
    """What a stream stage knows about its connection."""

    conn: int
    client: tuple[str, int]
    vip: tuple[str, int]
    vs: str = ""
    # Facts stages publish for the stages after them (the TLS stage fills version, cipher,
    # resumed, method, session_id; the http responder reports them).
    facts: dict[str, Any] = field(default_factory=dict)
    # Flow control over the client's TCP connection (set by the TCP stack; None elsewhere).
    control: FlowControl | None = None


class FlowControl(Protocol):
    """Back-pressure on the client's TCP connection, for stages that relay to another socket.

    The TCP stack sets ``FlowInfo.control``; it works under any wrapping stage (TLS), because it
    acts on the TCP connection itself: while reading is paused the stage is fed nothing more and
    the receive window closes as the buffer fills.
    """

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def send_queued(self) -> int:
        """Bytes queued toward the client and not yet acknowledged."""
        ...

    def notify_drained(self, low: int, callback: Callable[[float], None]) -> None:
        """Call ``callback(now)`` once, when ``send_queued()`` is at most ``low``."""
        ...


class BackendHandler(Protocol):
    """What a stage gets told about its backend connection (called from the runtime's loop)."""

    def on_connected(self, now: float) -> None: ...

    def on_data(self, data: bytes, now: float) -> None: ...

    def on_eof(self, now: float) -> None:
        """The backend will send no more (it shut down its write side)."""
        ...

    def on_drained(self, now: float) -> None:
        """Everything sent to the backend was handed to the kernel (output buffer empty)."""
        ...

    def on_error(self, reason: str, now: float) -> None:
        """The connection failed (``backend_refused``, ``backend_timeout``, ``backend_reset``,
        ``backend_error``, ``backend_limit``, ``backend_buffer_overflow``); no callback follows."""
        ...


class BackendConn(Protocol):
    """One backend connection; sends before ``on_connected`` are buffered."""

    @property
    def buffered(self) -> int:
        """Bytes accepted by ``send`` and not yet handed to the kernel."""
        ...

    def send(self, data: bytes) -> None: ...

    def close(self) -> None:
        """Shut down our write side once buffered bytes are out (the peer sees FIN)."""
        ...

    def abort(self) -> None:
        """Drop the connection now (RST); no callback follows."""
        ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class BackendConnector(Protocol):
    """Opens backend connections for stages; the runtime puts one in ``env.shared["connector"]``
    (``nf.backends.KernelConnector``): plugins stay sans-IO and never touch a socket."""

    def connect(
        self, host: str, port: int, handler: BackendHandler, timeout: float
    ) -> BackendConn: ...


class Downstream(Protocol):
    """Where a stage writes bytes toward the client."""

    def send(self, data: bytes) -> None: ...

    def close(self) -> None:
        """Orderly close once pending bytes are out (TCP FIN; TLS close_notify then FIN)."""
        ...

    def abort(self, reason: str) -> None:
        """Drop the connection now (TCP RST)."""
        ...


class StreamStage(Protocol):
    """One connection's view of a stream plugin. Sans-IO: ``now`` comes in as an argument."""

    def on_open(self, flow: FlowInfo, down: Downstream, now: float) -> None: ...

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the client side, in order."""
        ...

    def receive_eof(self, now: float) -> None:
        """The client side will send no more (FIN received / close_notify)."""
        ...

    def on_close(self, reason: str, now: float) -> None:
        """The flow is gone (closed or aborted); release resources. Called once."""
        ...

    def poll_at(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class BaseStage:
    """Convenience base: passes everything to ``next_stage`` and keeps ``down``."""

    def __init__(self, next_stage: StreamStage | None = None) -> None:
        self.next_stage = next_stage
        self.down: Downstream | None = None
        self.flow: FlowInfo | None = None

    def on_open(self, flow: FlowInfo, down: Downstream, now: float) -> None:
        self.flow, self.down = flow, down
        if self.next_stage is not None:
            self.next_stage.on_open(flow, down, now)

    def receive_data(self, data: bytes, now: float) -> None:
        if self.next_stage is not None:
            self.next_stage.receive_data(data, now)

    def receive_eof(self, now: float) -> None:
        if self.next_stage is not None:
            self.next_stage.receive_eof(now)

    def on_close(self, reason: str, now: float) -> None:
        if self.next_stage is not None:
            self.next_stage.on_close(reason, now)

    def poll_at(self) -> float | None:
        return self.next_stage.poll_at() if self.next_stage is not None else None

    def handle_timer(self, now: float) -> None:
        if self.next_stage is not None:
            self.next_stage.handle_timer(now)


@dataclass
class PluginEnv:
    """What a plugin gets when a virtual server's chain is built.

    ``config`` is the validated runtime configuration (``nf.config.Config``; typed ``Any`` here
    because ``pipeline`` does not import ``nf``); ``vs`` the virtual server's own table.
    ``shared`` holds objects shared by every virtual server of one runtime, keyed by plugin
    (the TLS plugin keeps one session store and ticket key ring per profile there).
    ``wall_clock`` and ``cpu_clock`` are injected so cores stay sans-IO and tests can fake them.
    """

    config: Any = None
    vs: Mapping[str, Any] = field(default_factory=dict)
    bus: EventBus = field(default_factory=NullBus)
    rng: Callable[[int], bytes] = field(default=lambda n: bytes(n))
    wall_clock: Callable[[], float] = field(default=lambda: 0.0)
    cpu_clock: Callable[[], float] = field(default=lambda: 0.0)
    shared: dict[str, Any] = field(default_factory=dict)


class StreamPlugin(Protocol):
    """Built once per virtual server; makes one stage per connection."""

    def new_stage(self, next_stage: StreamStage | None) -> StreamStage: ...


StreamPluginFactory = Callable[[str | None, PluginEnv], StreamPlugin]

ENTRY_POINT_GROUP = "tapnf.plugins"


def find_plugin(name: str) -> StreamPluginFactory:
    """The plugin factory registered under ``name`` in the ``tapnf.plugins`` entry points."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            factory: StreamPluginFactory = ep.load()
            return factory
    known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise LookupError(f"no plugin named {name!r} (known: {', '.join(known)})")


def parse_stage_spec(spec: str) -> tuple[str, str | None]:
    """``"tls:clientssl"`` → ``("tls", "clientssl")``; ``"echo"`` → ``("echo", None)``."""
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


class StreamChain:
    """A virtual server's chain: plugins built once, a fresh stage stack per connection.

    ``packet_stages`` are the chain's entries whose plugin is a ``PacketStage`` (it has
    ``on_frame`` and no ``new_stage``): the runtime installs them in the interface's packet chain,
    where they see every frame in both directions (``False`` drops it)."""

    def __init__(
        self,
        plugins: list[StreamPlugin],
        name: str = "",
        packet_stages: list[PacketStage] | None = None,
    ) -> None:
        if not plugins:
            raise ConfigError("chain", "a chain needs at least one stream stage", [])
        self.plugins = plugins
        self.name = name  # the virtual server's name (reported in FlowInfo.vs)
        self.packet_stages: list[PacketStage] = list(packet_stages or [])

    def new_connection(self) -> StreamStage:
        stage: StreamStage | None = None
        for plugin in reversed(self.plugins):
            stage = plugin.new_stage(stage)
        assert stage is not None
        return stage


def build_chain(
    specs: list[str],
    env: PluginEnv,
    path: str = "chain",
    find: Callable[[str], StreamPluginFactory] = find_plugin,
    name: str = "",
) -> StreamChain:
    """Build a chain from its config entries; errors name ``path[i]``. Entries whose plugin is a
    packet stage go to ``packet_stages``; at least one stream stage is needed."""
    plugins: list[StreamPlugin] = []
    packet_stages: list[PacketStage] = []
    for i, spec in enumerate(specs):
        plugin_name, arg = parse_stage_spec(spec)
        try:
            factory = find(plugin_name)
        except LookupError as exc:
            raise ConfigError(f"{path}[{i}]", str(exc), spec) from None
        try:
            plugin: Any = factory(arg, env)
        except ConfigError:
            raise
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{path}[{i}]", str(exc), spec) from None
        if hasattr(plugin, "on_frame") and not hasattr(plugin, "new_stage"):
            packet_stages.append(plugin)
        else:
            plugins.append(plugin)
    if not plugins:
        raise ConfigError(path, "a chain needs at least one stream stage", list(specs))
    return StreamChain(plugins, name, packet_stages)


__all__ = [
    "BackendConn",
    "BackendConnector",
    "BackendHandler",
    "BaseStage",
    "Direction",
    "Downstream",
    "ENTRY_POINT_GROUP",
    "FlowControl",
    "FlowInfo",
    "PacketChain",
    "PacketStage",
    "PluginEnv",
    "StreamChain",
    "StreamPlugin",
    "StreamPluginFactory",
    "StreamStage",
    "build_chain",
    "find_plugin",
    "parse_stage_spec",
]
