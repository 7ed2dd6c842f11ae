"""The control channel: a ZeroMQ ROUTER serving msgpack requests between frames, and its config.

Request ``{"id": n, "op": "<component>.<verb>", "args": {...}}``; reply ``{"id": n, "ok": true,
"result": ...}`` or ``{"id": n, "ok": false, "error": {"code", "message", "field"}}``. The loop
registers ``server.socket`` in its poller and calls ``server.process(now)`` when it is readable:
``process`` handles what is queued (at most ``max_requests``), never blocks and never raises —
malformed, oversize or unknown requests get an error reply naming the problem and are counted.
Both REQ-style envelopes (routing frames, empty delimiter, body) and DEALER-style ones (routing
frame, body) are accepted; the reply goes back with the same envelope.

CURVE (``curve_secret_key`` + ``curve_authorized_keys``) applies to ``tcp://`` endpoints; an
``ipc://`` endpoint is protected by its file permissions and served without it. Ticket keys move
only over ``ipc://``/``inproc://`` or CURVE (``is_secure``).
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zmq

from nf.config import int_in_range as _int
from nf.curve import CurveAuth, CurveConfig, load_public_key, secure_bind
from nf.ops import OpError, OpTable, RequestContext
from pipeline.errors import ConfigError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_EVENTS = "tcp://127.0.0.1:5556"
REQUEST_KEYS = frozenset({"id", "op", "args"})
MAX_ROUTING_FRAMES = 8  # REQ through a chain of proxies; more is treated as malformed


# ---- configuration ---------------------------------------------------------------------------
def endpoint_scheme(endpoint: str) -> str:
    return endpoint.partition("://")[0]


def is_loopback_tcp(endpoint: str) -> bool:
    """True when a ``tcp://HOST:PORT`` endpoint binds a loopback address only."""
    host = endpoint.partition("://")[2].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a host name: not provably loopback


def _check_endpoint(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, "must be a string like tcp://127.0.0.1:5555 or ipc:///path", value)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc") or not rest:
        raise ConfigError(path, "must be a tcp://, ipc:// or inproc:// endpoint", value)
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not host or not (port == "*" or (port.isdigit() and 0 < int(port) < 65536)):
            raise ConfigError(
                path, "tcp endpoints need HOST:PORT, e.g. tcp://127.0.0.1:5555", value
            )
    return value


@dataclass(frozen=True)
class ControlConfig:
    """``[control]``: where the control ROUTER and the event PUB bind, CURVE keys, limits."""

    endpoint: str = DEFAULT_ENDPOINT
    events: str = DEFAULT_EVENTS
    stats_interval: float = 10.0
    subscribe: str | None = None
    subscribe_server_key: str | None = None  # controller's public key file: CURVE on the SUB
    curve_secret_key: str | None = None  # our key pair (*.key_secret)
    curve_authorized_keys: str | None = None  # directory of client public keys (*.key)
    hwm: int = 10000
    max_request_bytes: int = 65536

    KEYS = (
        "endpoint",
        "events",
        "stats_interval",
        "subscribe",
        "subscribe_server_key",
        "curve_secret_key",
        "curve_authorized_keys",
        "hwm",
        "max_request_bytes",
    )

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], path: str = "control", base_dir: Path | None = None
    ) -> ControlConfig:
        """Validate a ``[control]`` table. Raises ConfigError(path.key, message, value)."""
        for key in table:
            if key not in cls.KEYS:
                raise ConfigError(
                    f"{path}.{key}", f"unknown key (allowed: {', '.join(cls.KEYS)})", table[key]
                )
        d = cls()
        endpoint = _check_endpoint(table.get("endpoint", d.endpoint), f"{path}.endpoint")
        events = _check_endpoint(table.get("events", d.events), f"{path}.events")
        if endpoint == events:
            raise ConfigError(f"{path}.events", "must differ from control.endpoint", events)
        interval = table.get("stats_interval", d.stats_interval)
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise ConfigError(f"{path}.stats_interval", "must be a number of seconds", interval)
        if not 0.1 <= interval <= 86400:
            raise ConfigError(f"{path}.stats_interval", "must be between 0.1 and 86400", interval)
        hwm = _int(table.get("hwm", d.hwm), f"{path}.hwm", 1, 10_000_000)
        max_req = _int(
            table.get("max_request_bytes", d.max_request_bytes),
            f"{path}.max_request_bytes",
            256,
            16 * 1024 * 1024,
        )
        files: dict[str, str | None] = {}
        for key in (
            "subscribe",
            "subscribe_server_key",
            "curve_secret_key",
            "curve_authorized_keys",
        ):
            value = table.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{path}.{key}", "must be a non-empty string", value)
            if value is not None and key != "subscribe" and base_dir is not None:
                value = str((base_dir / value).resolve())
            files[key] = value
        subscribe = files["subscribe"]
        if subscribe is not None:
            _check_endpoint(subscribe, f"{path}.subscribe")
        cfg = cls(
            endpoint=endpoint,
            events=events,
            stats_interval=float(interval),
            subscribe=subscribe,
            subscribe_server_key=files["subscribe_server_key"],
            curve_secret_key=files["curve_secret_key"],
            curve_authorized_keys=files["curve_authorized_keys"],
            hwm=hwm,
            max_request_bytes=max_req,
        )
        if (cfg.curve_secret_key is None) != (cfg.curve_authorized_keys is None):
            missing = (
                "curve_authorized_keys" if cfg.curve_authorized_keys is None else "curve_secret_key"
            )
            raise ConfigError(
                f"{path}.{missing}", "CURVE needs both curve_secret_key and curve_authorized_keys"
            )
        curve = cfg.curve(path)
        for key, ep in (("endpoint", endpoint), ("events", events)):
            if endpoint_scheme(ep) == "tcp" and not is_loopback_tcp(ep) and curve is None:
                raise ConfigError(
                    f"{path}.{key}",
                    "binding to a non-loopback address requires CurveZMQ "
                    "(set curve_secret_key and curve_authorized_keys; `nf keys curve` makes them)",
                    ep,
                )
        if cfg.subscribe_server_key is not None:
            if cfg.subscribe is None:
                raise ConfigError(f"{path}.subscribe_server_key", "needs control.subscribe", None)
            if cfg.curve_secret_key is None:
                raise ConfigError(
                    f"{path}.curve_secret_key",
                    "a CURVE subscription needs our own key pair (curve_secret_key)",
                )
            load_public_key(cfg.subscribe_server_key, f"{path}.subscribe_server_key")
        return cfg

    def curve(self, path: str = "control") -> CurveConfig | None:
        if self.curve_secret_key is None or self.curve_authorized_keys is None:
            return None
        return CurveConfig.load(self.curve_secret_key, self.curve_authorized_keys, path)


# ---- the server ------------------------------------------------------------------------------
class ControlServer:
    """ROUTER socket serving an op table. See the module docstring for the protocol."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        endpoint: str,
        ops: OpTable,
        curve: CurveConfig | None = None,
        *,
        config: ControlConfig | None = None,
        max_request_bytes: int | None = None,
        counters: collections.Counter[str] | None = None,
    ) -> None:
        if curve is None and config is not None:
            curve = config.curve()
        if endpoint_scheme(endpoint) != "tcp":
            curve = None  # ipc:// is guarded by file permissions, inproc:// by the process
        self.endpoint = endpoint
        self.ops = ops
        self.curve = curve
        self.counters: collections.Counter[str] = (
            counters if counters is not None else collections.Counter()
        )
        limit = max_request_bytes or (config.max_request_bytes if config else 65536)
        self.max_request_bytes = limit
        self._ctx = ctx
        self._auth: CurveAuth | None = None
        self.socket: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
        self.socket.linger = 0
        self.socket.sndhwm = 1000
        self.socket.rcvhwm = 1000
        # Oversize requests up to 16x the limit get an error reply; beyond that ZeroMQ drops the
        # peer's connection before we ever see the bytes (bounded memory).
        self.socket.setsockopt(zmq.MAXMSGSIZE, 16 * limit)
        try:
            self._auth = secure_bind(ctx, self.socket, endpoint, curve)
        except zmq.ZMQError:
            self.close()
            raise
        scheme = endpoint_scheme(endpoint)
        self.is_secure = curve is not None or scheme in ("ipc", "inproc")

    # -- serving ---------------------------------------------------------------------------
    def process(self, now: float, max_requests: int = 64) -> int:
        """Serve up to ``max_requests`` queued requests; returns how many were handled."""
        handled = 0
        if self._auth is not None:  # CURVE refusals counted by the ZAP thread
            for key, value in self._auth.snapshot().items():
                self.counters[key] = value
        for _ in range(max_requests):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            except zmq.ZMQError:
                self.counters["control.recv_errors"] += 1
                break
            handled += 1
            self.counters["control.requests"] += 1
            route, body = split_envelope(frames)
            if route is None:
                self.counters["control.unroutable"] += 1
                continue
            reply = self.handle_body(body, now)
            self._send(route, reply)
        return handled

    def handle_body(self, body: list[bytes], now: float) -> dict[str, Any]:
        """The reply for the frames after the envelope; never raises."""
        try:
            req_id, op, args = self._parse(body)
        except OpError as err:
            return self._error(err.req_id, err)
        try:
            result = self.ops.call(op, args, RequestContext(secure=self.is_secure, now=now))
        except OpError as err:
            return self._error(req_id, err)
        self.counters["control.ok"] += 1
        return {"id": req_id, "ok": True, "result": result}

    def _parse(self, body: list[bytes]) -> tuple[Any, str, dict[str, Any]]:
        if len(body) != 1:
            raise OpError("bad_request", f"expected one msgpack frame, got {len(body)}", None)
        raw = body[0]
        if len(raw) > self.max_request_bytes:
            raise OpError(
                "too_large", f"request is {len(raw)} bytes, limit {self.max_request_bytes}", None
            )
        try:
            request = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
        except Exception as exc:  # noqa: BLE001 - every msgpack failure mode is "malformed"
            raise OpError("bad_request", f"malformed msgpack: {type(exc).__name__}", None) from None
        if not isinstance(request, dict):
            raise OpError("bad_request", "request must be a msgpack map", None)
        req_id = request.get("id")
        if isinstance(req_id, bool) or not isinstance(req_id, int | str | None):
            raise OpError("bad_request", "id must be an integer or a string", "id")
        for key in request:
            if key not in REQUEST_KEYS:
                raise OpError("bad_request", f"unknown request key {key!r}", str(key), req_id)
        if "id" not in request:
            raise OpError("bad_request", "missing id", "id")
        op = request.get("op")
        if not isinstance(op, str):
            raise OpError("bad_request", "op must be a string such as 'nf.status'", "op", req_id)
        args = request.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise OpError("bad_request", "args must be a map with string keys", "args", req_id)
        return req_id, op, args

    def _error(self, req_id: Any, err: OpError) -> dict[str, Any]:
        self.counters["control.errors"] += 1
        self.counters[f"control.errors.{err.code}"] += 1
        error = {"code": err.code, "message": err.message, "field": err.field}
        return {"id": req_id, "ok": False, "error": error}

    def _send(self, route: list[bytes], reply: dict[str, Any]) -> None:
        try:
            payload = msgpack.packb(reply, use_bin_type=True)
        except Exception as exc:  # noqa: BLE001 - an op returned something msgpack cannot encode
            self.counters["control.errors.internal"] += 1
            payload = msgpack.packb(
                {
                    "id": reply.get("id"),
                    "ok": False,
                    "error": {
                        "code": "internal",
                        "message": f"cannot encode result: {exc}",
                        "field": None,
                    },
                }
            )
        try:
            self.socket.send_multipart([*route, payload], zmq.NOBLOCK)
        except zmq.ZMQError:  # peer gone or its queue full: the reply is lost, not the loop
            self.counters["control.replies_dropped"] += 1

    def close(self) -> None:
        if self.socket is not None and not self.socket.closed:
            self.socket.close(linger=0)
        if self._auth is not None:
            self._auth.release(self._ctx)
            self._auth = None


def split_envelope(frames: list[bytes]) -> tuple[list[bytes] | None, list[bytes]]:
    """(routing frames incl. delimiter, body frames). REQ style: identities, b'', body;
    DEALER style: identity, body. None when there is not even an identity."""
    if not frames:
        return None, []
    for i in range(1, min(len(frames), MAX_ROUTING_FRAMES + 1)):
        if frames[i] == b"":
            return frames[: i + 1], frames[i + 1 :]
    return frames[:1], frames[1:]


__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_EVENTS",
    "ControlConfig",
    "ControlServer",
    "endpoint_scheme",
    "is_loopback_tcp",
    "split_envelope",
]
