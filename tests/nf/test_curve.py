"""CURVE with real keys: an authorised client is served, an unknown key is refused and counted,
and ticket-key ops are allowed over CURVE tcp://."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import zmq
import zmq.auth

from nf.control import ControlConfig, ControlServer
from nf.curve import generate, make_client
from nf.exporter import ZmqEventBus
from nf.ops import build_ops
from tests.nf.conftest import FakeRegistry, FakeView, b64


def _client(
    ctx: zmq.Context[Any], endpoint: str, server_pub: bytes, key_secret: Path
) -> zmq.Socket[Any]:
    pub, sec = zmq.auth.load_certificate(str(key_secret))
    assert sec is not None
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    make_client(sock, server_pub, pub, sec)
    sock.connect(endpoint)
    return sock


def _serve_until(
    srv: ControlServer, sock: zmq.Socket[Any], timeout_ms: int = 2000
) -> dict[str, Any] | None:
    for _ in range(timeout_ms // 50):
        if srv.socket.poll(50):
            srv.process(0.0)
        if sock.poll(0):
            reply: dict[str, Any] = msgpack.unpackb(sock.recv_multipart()[-1])
            return reply
    return None


def test_curve_allow_and_deny(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    keys = generate(tmp_path / "k")
    stranger = generate(tmp_path / "stranger", "stranger")
    cfg = ControlConfig.from_table(
        {
            "endpoint": "tcp://127.0.0.1:*",
            "curve_secret_key": str(keys["server_secret"]),
            "curve_authorized_keys": str(keys["authorized"]),
        }
    )
    view = FakeView(FakeRegistry())
    srv = ControlServer(ctx, "tcp://127.0.0.1:*", build_ops(view), config=cfg)
    view.control = srv  # type: ignore[attr-defined]
    endpoint = srv.socket.getsockopt_string(zmq.LAST_ENDPOINT)
    server_pub = zmq.auth.load_certificate(str(keys["server_public"]))[0]
    good = _client(ctx, endpoint, server_pub, keys["client_secret"])
    bad = _client(ctx, endpoint, server_pub, stranger["client_secret"])
    try:
        assert srv.is_secure
        bad.send(msgpack.packb({"id": 1, "op": "nf.status"}))
        assert _serve_until(srv, bad, 600) is None  # refused: no reply ever
        good.send(msgpack.packb({"id": 2, "op": "tls.tickets.export"}))
        reply = _serve_until(srv, good)
        assert reply is not None and reply["ok"] is True  # ticket keys allowed over CURVE
        assert reply["result"]["keys"] == [b64(b"\x01" * 80)]
        good.send(msgpack.packb({"id": 3, "op": "nf.stats"}))
        reply = _serve_until(srv, good)
        assert reply is not None
        assert reply["result"]["counters"]["control.curve_denied"] >= 1
        assert reply["result"]["counters"]["control.curve_allowed"] >= 1
    finally:
        good.close()
        bad.close()
        srv.close()


def test_events_over_curve(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    keys = generate(tmp_path / "k")
    cfg = ControlConfig.from_table(
        {
            "curve_secret_key": str(keys["server_secret"]),
            "curve_authorized_keys": str(keys["authorized"]),
        }
    )
    bus = ZmqEventBus(ctx, "tcp://127.0.0.1:*", "i", lambda: 0, config=cfg)
    endpoint = bus.socket.getsockopt_string(zmq.LAST_ENDPOINT)
    pub, sec = zmq.auth.load_certificate(str(keys["client_secret"]))
    server_pub = zmq.auth.load_certificate(str(keys["server_public"]))[0]
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    assert sec is not None
    make_client(sub, server_pub, pub, sec)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    try:
        for _ in range(40):
            if bus.subscriber_count():
                break
            bus.socket.poll(50)
        bus.emit("tls.handshake", {"conn": 1})
        assert sub.poll(2000)
        assert msgpack.unpackb(sub.recv_multipart()[1])["conn"] == 1
    finally:
        sub.close()
        bus.close()


def test_generate_writes_usable_files(tmp_path: Path) -> None:
    out = generate(tmp_path / "k", "ops")
    assert (out["authorized"] / "ops.key").exists()
    assert oct(out["server_secret"].stat().st_mode & 0o777) == "0o600"
    pub, sec = zmq.auth.load_certificate(str(out["client_secret"]))
    assert sec is not None and len(pub) == 40


def test_curve_applies_to_tcp_only(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    """With CURVE configured, an ipc:// control endpoint still serves local `nf ctl` (no keys)."""
    keys = generate(tmp_path / "k")
    cfg = ControlConfig.from_table(
        {
            "curve_secret_key": str(keys["server_secret"]),
            "curve_authorized_keys": str(keys["authorized"]),
        }
    )
    ep = f"ipc://{tmp_path}/c.sock"
    srv = ControlServer(ctx, ep, build_ops(FakeView(FakeRegistry())), config=cfg)
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(ep)
    try:
        assert srv.is_secure and srv.curve is None
        sock.send(msgpack.packb({"id": 1, "op": "tls.tickets.export"}))
        reply = _serve_until(srv, sock)
        assert reply is not None and reply["ok"] is True
    finally:
        sock.close()
        srv.close()
