"""Fixtures for the control channel, exporter and collector tests: a fake runtime view with a fake
profile registry (the profile-op tests against the real ProfileRegistry live in
test_ops_registry.py), a ZeroMQ context, and a client helper that round-trips one request."""

from __future__ import annotations

import base64
import collections
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from nf.control import ControlServer
from nf.ops import build_ops
from pipeline.errors import ConfigError
from pipeline.events import ListBus


class FakeProfile:
    """Behaves like plugins.tls.registry.ProfileRuntime's control API, with plain data."""

    def __init__(self, registry: FakeRegistry, name: str) -> None:
        self.registry = registry
        self.name = name
        self.settings: dict[str, Any] = {"cache_size": 8, "session_ticket": False}
        self.sessions = {bytes([i]) * 32: float(i) for i in range(3)}
        self.keys: list[tuple[str, bytes]] = [("aa" * 16, b"\x01" * 80)]

    def get(self) -> dict[str, Any]:
        return dict(self.settings)

    def set(
        self, changes: Mapping[str, Any], *, source: str = "control", version: int | None = None
    ) -> list[str]:
        for key, value in changes.items():
            if key not in self.settings:
                raise ConfigError(f"profiles.{self.name}.{key}", "unknown key", value)
            if not isinstance(value, type(self.settings[key])):
                raise ConfigError(f"profiles.{self.name}.{key}", "wrong type", value)
        changed = [k for k, v in changes.items() if self.settings[k] != v]
        self.settings.update(changes)
        if changed:
            self.registry.bus.emit(
                "nf.profile",
                {"profile": self.name, "changed": changed, "source": source, "version": version},
            )
            self.registry.gen += 1
        return changed

    def sessions_list(self, wall_now: float) -> list[dict[str, Any]]:
        return [{"id": sid.hex(), "age_s": wall_now - t} for sid, t in self.sessions.items()]

    def sessions_flush(self) -> int:
        n = len(self.sessions)
        self.sessions.clear()
        return n

    def tickets_list(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "state": "current" if i == 0 else "decrypt"}
            for i, (n, _) in enumerate(self.keys)
        ]

    def tickets_rotate(self, wall_now: float) -> str:
        name = f"{len(self.keys):032x}"
        self.keys.insert(0, (name, bytes([len(self.keys)]) * 80))
        self.registry.gen += 1
        return name

    def tickets_import(self, keys: list[bytes], wall_now: float) -> list[str]:
        names = [k[:16].hex() for k in keys]
        self.keys[:0] = list(zip(names, keys, strict=True))
        self.registry.gen += 1
        return names

    def tickets_export(self) -> list[bytes]:
        return [k for _, k in self.keys]

    def stats(self) -> dict[str, Any]:
        return {"cache.entries": len(self.sessions)}


class FakeRegistry:
    def __init__(self, names: tuple[str, ...] = ("clientssl",)) -> None:
        self.gen = 0
        self.bus: Any = ListBus()
        self.profiles = {n: FakeProfile(self, n) for n in names}

    def get(self, name: str) -> FakeProfile:
        return self.profiles[name]

    def names(self) -> list[str]:
        return list(self.profiles)


class FakeView:
    def __init__(self, tls: Any = None) -> None:
        self.counters: collections.Counter[str] = collections.Counter({"drop.bad_checksum": 2})
        self.tls = tls
        self.bus = ListBus()
        if tls is not None:
            tls.bus = self.bus  # like the runtime: one bus for the registry and the ops
        self.endpoint_is_secure = False

    def status(self) -> dict[str, Any]:
        return {"version": "0.1.0", "uptime_s": 1.5, "config": None, "interfaces": [], "gen": 0}

    def flows(self) -> list[dict[str, Any]]:
        return [{"conn": i, "state": "ESTABLISHED"} for i in range(5)]

    def vips(self) -> list[dict[str, Any]]:
        return [{"address": "192.0.2.10", "version": 4, "virtual_servers": []}]


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


class Client:
    """A REQ or DEALER client; ``call`` sends one request, lets the server process, returns the
    decoded reply (bounded waits: one second each)."""

    def __init__(
        self, ctx: zmq.Context[Any], server: ControlServer, endpoint: str, kind: int
    ) -> None:
        self.server = server
        self.kind = kind
        self.sock = ctx.socket(kind)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.ids = itertools.count(1)

    req_style = False  # DEALER only: send an empty delimiter frame like REQ does

    def send_raw(self, frames: list[bytes]) -> None:
        if self.kind == zmq.DEALER and self.req_style:
            frames = [b"", *frames]
        self.sock.send_multipart(frames)

    def serve(self) -> None:
        assert self.server.socket.poll(1000), "request never reached the server"
        self.server.process(0.0)

    def reply(self) -> dict[str, Any]:
        assert self.sock.poll(1000), "no reply"
        frames = self.sock.recv_multipart()
        if self.kind == zmq.DEALER and self.req_style:
            assert frames[0] == b""
            frames = frames[1:]
        assert len(frames) == 1
        decoded: dict[str, Any] = msgpack.unpackb(frames[0])
        return decoded

    def raw(self, frames: list[bytes]) -> dict[str, Any]:
        self.send_raw(frames)
        self.serve()
        return self.reply()

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        req_id = next(self.ids)
        reply = self.raw([msgpack.packb({"id": req_id, "op": op, "args": args})])
        assert reply["id"] == req_id
        return reply

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture
def view() -> FakeView:
    return FakeView(FakeRegistry(("clientssl", "other")))


@pytest.fixture
def ipc_endpoint(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/control.sock"


@pytest.fixture
def server(ctx: zmq.Context[Any], view: FakeView, ipc_endpoint: str) -> Iterator[ControlServer]:
    srv = ControlServer(ctx, ipc_endpoint, build_ops(view, wall_clock=lambda: 100.0))
    yield srv
    srv.close()


@pytest.fixture
def client(ctx: zmq.Context[Any], server: ControlServer, ipc_endpoint: str) -> Iterator[Client]:
    c = Client(ctx, server, ipc_endpoint, zmq.REQ)
    yield c
    c.close()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
