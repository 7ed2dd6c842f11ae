"""Fleet push: one controller publishes profile changes and ticket keys to many NF instances.

The controller (``nf push``) binds an XPUB and publishes on topic ``tapnf.push`` a msgpack map
``{"v": 1, "version": N, "kind": "profile"|"keys"|"rotate", ...}``:

* ``profile``: ``"profiles": {NAME: {key: value, ...}}`` — applied like ``tls.profile.set``;
* ``keys``: ``"keys": [base64 80-byte keys]``, optional ``"profile"`` (default: every profile) —
  applied like ``tls.tickets.import``; only accepted on a CURVE-authenticated subscription;
* ``rotate``: optional ``"profile"`` — like ``tls.tickets.rotate``.

Each NF's :class:`FleetSubscriber` (``[control] subscribe``) runs every message through the same
op table as the control channel, so validation is identical, and acknowledges with ``nf.profile``
events (``source = "push"``, ``version``). Versions make it idempotent: a message whose version
is not above the last one seen is ignored and counted (``push.stale``), so a controller may repeat
a message to reach late joiners.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping
from typing import Any

import msgpack
import zmq

from nf.curve import CurveAuth, CurveConfig, load_public_key, load_secret_pair, make_client
from nf.curve import make_server as make_curve_server
from nf.ops import OpError, OpTable, RequestContext, build_ops

TOPIC = b"tapnf.push"
KINDS = ("profile", "keys", "rotate")
MAX_PUSH_BYTES = 1 << 20
MESSAGE_KEYS = frozenset({"v", "version", "kind", "profile", "profiles", "keys"})


class PushError(ValueError):
    """A push message that cannot be applied; ``field`` names the problem."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def make_message(
    version: int,
    kind: str,
    *,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    keys: list[str] | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    msg: dict[str, Any] = {"v": 1, "version": version, "kind": kind}
    if profiles is not None:
        msg["profiles"] = {name: dict(changes) for name, changes in profiles.items()}
    if keys is not None:
        msg["keys"] = list(keys)
    if profile is not None:
        msg["profile"] = profile
    return msg


class FleetSubscriber:
    """The NF side: a SUB socket the loop polls like the control server (``socket``,
    ``process(now)``, ``close()``)."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        config: Any,
        view: Any,
        *,
        ops: OpTable | None = None,
        curve: tuple[bytes, bytes, bytes] | None = None,
    ) -> None:
        self.endpoint: str = config.subscribe
        self.view = view
        self.ops = ops if ops is not None else build_ops(view)
        self.counters: collections.Counter[str] = collections.Counter()
        self.version: int | None = None
        self.last_error: str | None = None
        if curve is None and getattr(config, "subscribe_server_key", None):
            server_pub = load_public_key(
                config.subscribe_server_key, "control.subscribe_server_key"
            )
            pub, sec = load_secret_pair(config.curve_secret_key, "control.curve_secret_key")
            curve = (server_pub, pub, sec)
        self.secure = curve is not None
        self.socket: zmq.Socket[Any] = ctx.socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.rcvhwm = 1000
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_PUSH_BYTES)
        if curve is not None:
            make_client(self.socket, *curve)
        self.socket.setsockopt(zmq.SUBSCRIBE, TOPIC)
        self.socket.connect(self.endpoint)

    def process(self, now: float, max_messages: int = 64) -> int:
        """Apply what is queued (at most ``max_messages``); never blocks, never raises."""
        handled = 0
        for _ in range(max_messages):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                self.counters["push.recv_errors"] += 1
                break
            handled += 1
            self.counters["push.received"] += 1
            try:
                self.apply_frames(frames, now)
            except PushError as exc:
                self.counters["push.rejected"] += 1
                where = f" ({exc.field})" if exc.field else ""
                self.last_error = f"{exc}{where}"
        return handled

    def apply_frames(self, frames: list[bytes], now: float) -> None:
        if len(frames) != 2 or frames[0] != TOPIC:
            raise PushError("expected [tapnf.push, msgpack map]")
        try:
            msg = msgpack.unpackb(frames[1], raw=False, strict_map_key=True)
        except Exception:  # noqa: BLE001 - any decode failure is a malformed push
            raise PushError("malformed msgpack") from None
        self.apply(msg, now)

    def apply(self, msg: Any, now: float) -> list[Any]:
        """Validate and apply one decoded message; returns the op results."""
        if not isinstance(msg, dict):
            raise PushError("push message must be a map")
        for key in msg:
            if key not in MESSAGE_KEYS:
                raise PushError(f"unknown key {key!r}", str(key))
        if msg.get("v") != 1:
            raise PushError("unsupported push schema version", "v")
        version = msg.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise PushError("version must be a non-negative integer", "version")
        if self.version is not None and version <= self.version:
            self.counters["push.stale"] += 1
            return []
        kind = msg.get("kind")
        if kind not in KINDS:
            raise PushError(f"kind must be one of {', '.join(KINDS)}", "kind")
        if kind == "keys" and not self.secure:
            self.counters["push.refused_insecure"] += 1
            self.version = version  # do not re-evaluate the replays
            raise PushError("ticket keys are only accepted on a CURVE subscription", "keys")
        ctx = RequestContext(secure=self.secure, now=now, source="push", version=version)
        self.version = version
        calls = self._calls(kind, msg)
        results = []
        try:
            for op, args in calls:
                results.append(self.ops.call(op, args, ctx))
        except OpError as err:
            raise PushError(f"{err.code}: {err.message}", err.field) from None
        self.counters["push.applied"] += 1
        return results

    def _calls(self, kind: str, msg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if kind == "profile":
            profiles = msg.get("profiles")
            if not isinstance(profiles, dict) or not profiles:
                raise PushError("profiles must be a non-empty map of name -> changes", "profiles")
            calls = []
            for name, changes in profiles.items():
                if not isinstance(changes, dict) or "profile" in changes:
                    raise PushError("changes must be a map of profile keys", f"profiles.{name}")
                calls.append(("tls.profile.set", {"profile": name, **changes}))
            return calls
        targets = self._targets(msg.get("profile"))
        if kind == "keys":
            return [
                ("tls.tickets.import", {"profile": t, "keys": msg.get("keys")}) for t in targets
            ]
        return [("tls.tickets.rotate", {"profile": t}) for t in targets]

    def _targets(self, profile: Any) -> list[str]:
        if profile is not None:
            if not isinstance(profile, str):
                raise PushError("profile must be a string", "profile")
            return [profile]
        registry = getattr(self.view, "tls", None)
        names = list(registry.names()) if registry is not None else []
        if not names:
            raise PushError("no TLS profiles configured", "profile")
        return names

    def close(self) -> None:
        if not self.socket.closed:
            self.socket.close(linger=0)


class Publisher:
    """The controller side: an XPUB (to see who listens) with optional CURVE."""

    def __init__(
        self, ctx: zmq.Context[Any], endpoint: str, curve: CurveConfig | None = None
    ) -> None:
        self._ctx = ctx
        self._auth: CurveAuth | None = None
        self.subscriptions = 0
        self.socket: zmq.Socket[Any] = ctx.socket(zmq.XPUB)
        self.socket.linger = 2000  # let the last copies reach the subscribers on close
        self.socket.setsockopt(zmq.XPUB_VERBOSER, 1)
        if curve is not None:
            self._auth = CurveAuth.for_context(ctx)
            self._auth.allow_dir(curve.authorized_dir)
            make_curve_server(self.socket, curve)
        self.socket.bind(endpoint)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def poll_subscriptions(self, timeout_ms: int = 0) -> int:
        """Drain (un)subscribe notices; returns the number of live subscriptions."""
        while self.socket.poll(timeout_ms):
            timeout_ms = 0
            msg = self.socket.recv()
            if msg[:1] == b"\x01" and TOPIC.startswith(msg[1:]):
                self.subscriptions += 1
            elif msg[:1] == b"\x00" and TOPIC.startswith(msg[1:]):
                self.subscriptions = max(0, self.subscriptions - 1)
        return self.subscriptions

    def publish(self, msg: Mapping[str, Any]) -> None:
        self.socket.send_multipart([TOPIC, msgpack.packb(dict(msg), use_bin_type=True)])

    def run(
        self,
        msg: Mapping[str, Any],
        *,
        duration: float,
        interval: float,
        subscribers: int | None = None,
        clock: Any = time.monotonic,
    ) -> int:
        """Publish ``msg`` every ``interval`` seconds for ``duration`` (late joiners get a copy),
        or — with ``subscribers`` — once that many are listening. Returns the copies sent."""
        deadline = clock() + duration
        sent = 0
        next_send = clock()
        while clock() < deadline:
            wait_ms = max(0, int((next_send - clock()) * 1000))
            count = self.poll_subscriptions(min(wait_ms, 100))
            if subscribers is not None:
                if count >= subscribers:
                    self.publish(msg)
                    return sent + 1
                continue
            if clock() >= next_send:
                self.publish(msg)
                sent += 1
                next_send += interval
        return sent

    def close(self) -> None:
        if not self.socket.closed:
            self.socket.close()
        if self._auth is not None:
            self._auth.release(self._ctx)
            self._auth = None


__all__ = ["FleetSubscriber", "Publisher", "PushError", "TOPIC", "make_message"]
