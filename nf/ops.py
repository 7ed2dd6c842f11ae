"""The control op table: every op the control channel (and the fleet-push subscriber) can run.

``build_ops(view)`` binds the ops to a :class:`RuntimeView` (the runtime implements it; tests use a
fake). ``OpTable.call(name, args, ctx)`` validates the arguments against each op's declared
arguments, runs it and turns every failure into an :class:`OpError` with a code, a message and the
offending field — the control server puts those in the error reply verbatim. Profile changes go
through ``ProfileRuntime.set`` (the same rules as the config file); ticket key import/export is
refused unless the request arrived on a secure endpoint (``ipc://``, ``inproc://`` or CURVE).
"""

from __future__ import annotations

import base64
import binascii
import collections
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.errors import ConfigError
from pipeline.events import EventBus, NullBus

TICKET_KEY_BYTES = 80
MAX_LIST = 100_000
DEFAULT_LIST = 1000
MAX_IMPORT_KEYS = 64


class RuntimeView(Protocol):
    """What the ops need from the runtime."""

    counters: collections.Counter[str]
    tls: Any  # plugins.tls.registry.ProfileRegistry | None

    @property
    def endpoint_is_secure(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...
    def flows(self) -> list[dict[str, Any]]: ...
    def vips(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class RequestContext:
    """Where a request came from: ``secure`` endpoint or not, ``now``, control or fleet push."""

    secure: bool
    now: float = 0.0
    source: str = "control"
    version: int | None = None


class OpError(Exception):
    """An error reply: ``code`` (machine-readable), ``message``, the offending ``field``."""

    def __init__(self, code: str, message: str, field: str | None = None, req_id: Any = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.req_id = req_id


Handler = Callable[[dict[str, Any], RequestContext], Any]


@dataclass(frozen=True)
class Op:
    name: str
    handler: Handler
    help: str
    args: Mapping[str, tuple[type | tuple[type, ...], bool]] = field(default_factory=dict)
    extra_args: bool = False  # tls.profile.set: the profile's own keys are further arguments


class OpTable:
    def __init__(self, ops: list[Op]) -> None:
        self.ops = {op.name: op for op in ops}

    def names(self) -> list[str]:
        return sorted(self.ops)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "op": op.name,
                "args": [*op.args, *(["KEY=VALUE..."] if op.extra_args else [])],
                "help": op.help,
            }
            for op in sorted(self.ops.values(), key=lambda o: o.name)
        ]

    def call(self, name: str, args: dict[str, Any], ctx: RequestContext) -> Any:
        op = self.ops.get(name)
        if op is None:
            raise OpError("unknown_op", f"unknown op {name!r} (try nf.ops)", "op")
        for key, (types, required) in op.args.items():
            if key not in args:
                if required:
                    raise OpError("bad_args", f"{key} is required", f"args.{key}")
                continue
            value = args[key]
            if isinstance(value, bool) and bool not in _as_tuple(types):
                raise OpError("bad_args", f"{key} has the wrong type", f"args.{key}")
            if not isinstance(value, types):
                names = "/".join(t.__name__ for t in _as_tuple(types))
                raise OpError("bad_args", f"{key} must be {names}", f"args.{key}")
        if not op.extra_args:
            for key in args:
                if key not in op.args:
                    allowed = ", ".join(op.args) or "none"
                    raise OpError(
                        "bad_args", f"unknown argument {key!r} (allowed: {allowed})", f"args.{key}"
                    )
        try:
            return op.handler(args, ctx)
        except OpError:
            raise
        except ConfigError as exc:
            raise OpError("invalid", exc.message, exc.path) from None
        except Exception as exc:  # noqa: BLE001 - a bug in one op must not take the NF down
            raise OpError("internal", f"{name} failed: {type(exc).__name__}: {exc}") from None


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


# ---- the ops ---------------------------------------------------------------------------------
class _Ops:
    def __init__(self, view: RuntimeView, bus: EventBus, wall_clock: Callable[[], float]) -> None:
        self.view = view
        self.bus = bus
        self.wall = wall_clock

    def profile(self, args: Mapping[str, Any]) -> tuple[str, Any]:
        registry = self.view.tls
        if registry is None:
            raise OpError("no_tls", "no TLS profiles are configured", "profile")
        names = list(registry.names())
        name = args.get("profile")
        if name is None:
            if len(names) != 1:
                raise OpError(
                    "bad_args", f"profile=NAME is required (one of: {', '.join(names)})", "profile"
                )
            name = names[0]
        try:
            return name, registry.get(name)
        except KeyError:
            raise OpError(
                "unknown_profile", f"no profile {name!r} (have: {', '.join(names)})", "profile"
            ) from None

    def _announce(self, profile: str, changed: list[str], ctx: RequestContext) -> None:
        self.bus.emit(
            "nf.profile",
            {
                "profile": profile,
                "changed": list(changed),
                "source": ctx.source,
                "version": ctx.version,
            },
        )

    def _gen(self) -> int:
        return int(getattr(self.view.tls, "gen", 0)) if self.view.tls is not None else 0

    # nf.*
    def status(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        return dict(self.view.status())

    def stats(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        view: Any = self.view
        counters: dict[str, Any] = dict(view.stats() if hasattr(view, "stats") else view.counters)
        for component in ("control", "exporter", "subscriber"):
            extra = getattr(getattr(view, component, None), "counters", None)
            if extra:
                counters.update(extra)
        profiles = {}
        if view.tls is not None:
            profiles = {name: view.tls.get(name).stats() for name in view.tls.names()}
        return {
            "counters": dict(sorted(counters.items())),
            "profiles": profiles,
            "gen": self._gen(),
        }

    # tls.profile.*
    def profile_get(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        name, prof = self.profile(args)
        return {"profile": name, "gen": self._gen(), "settings": prof.get()}

    def profile_set(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        name, prof = self.profile(args)
        changes = {k: v for k, v in args.items() if k != "profile"}
        if not changes:
            raise OpError("bad_args", "nothing to set (give key=value pairs)", "args")
        # ProfileRuntime.set validates like the config file, applies atomically, bumps gen and
        # announces the change (nf.profile) with our source/version.
        changed = list(prof.set(changes, source=ctx.source, version=ctx.version))
        if not changed and ctx.source == "push":
            self._announce(name, changed, ctx)  # a push is acknowledged even when a no-op
        return {"profile": name, "changed": changed, "gen": self._gen()}

    # tls.sessions.*
    def sessions_list(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        name, prof = self.profile(args)
        items = list(prof.sessions_list(self.wall()))
        return _page(name, items, args)

    def sessions_flush(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        name, prof = self.profile(args)
        return {"profile": name, "flushed": int(prof.sessions_flush())}

    # tls.tickets.*
    def tickets_list(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        name, prof = self.profile(args)
        return {"profile": name, "keys": list(prof.tickets_list())}

    def tickets_rotate(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        name, prof = self.profile(args)
        current = prof.tickets_rotate(self.wall())
        self._announce(name, ["ticket_keys"], ctx)
        return {"profile": name, "current": current, "gen": self._gen()}

    def tickets_import(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        _require_secure(ctx, "tls.tickets.import")
        name, prof = self.profile(args)
        keys = decode_keys(args["keys"])
        names = list(prof.tickets_import(keys, self.wall()))
        self._announce(name, ["ticket_keys"], ctx)
        return {"profile": name, "installed": names, "gen": self._gen()}

    def tickets_export(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        _require_secure(ctx, "tls.tickets.export")
        name, prof = self.profile(args)
        keys = [base64.b64encode(bytes(k)).decode("ascii") for k in prof.tickets_export()]
        return {"profile": name, "keys": keys}

    # flows / vips
    def flows_list(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        return _page(None, list(self.view.flows()), args)

    def vips_list(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        return list(self.view.vips())

    # capture.* (the runtime's plugins.capture.manager.CaptureManager, ``view.capture``)
    def _captures(self) -> Any:
        captures = getattr(self.view, "capture", None)
        if captures is None:
            raise OpError("no_capture", "this runtime has no capture manager", "op")
        return captures

    def capture_start(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        # writes any file the NF can write and embeds every TLS secret: like a key export
        _require_secure(ctx, "capture.start")
        return self._captures().start(**args)

    def capture_stop(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        return self._captures().stop(args.get("path"))

    def capture_status(self, args: dict[str, Any], ctx: RequestContext) -> Any:
        return self._captures().status()


def _require_secure(ctx: RequestContext, op: str) -> None:
    if not ctx.secure:
        raise OpError(
            "insecure_endpoint",
            f"{op} moves ticket keys: only allowed on an ipc:// or CURVE-authenticated endpoint",
            "op",
        )


def _page(profile: str | None, items: list[Any], args: Mapping[str, Any]) -> dict[str, Any]:
    limit = args.get("limit", DEFAULT_LIST)
    if not 0 <= limit <= MAX_LIST:
        raise OpError("bad_args", f"limit must be between 0 and {MAX_LIST}", "args.limit")
    out: dict[str, Any] = {"total": len(items), "items": items[:limit]}
    if profile is not None:
        out = {"profile": profile, **out}
    return out


def decode_keys(value: Any) -> list[bytes]:
    """Ticket keys from a request: a list of base64 strings (or msgpack bin), 80 bytes each."""
    if not isinstance(value, list) or not value:
        raise OpError("bad_args", "keys must be a non-empty list of base64 strings", "args.keys")
    if len(value) > MAX_IMPORT_KEYS:
        raise OpError("bad_args", f"at most {MAX_IMPORT_KEYS} keys per import", "args.keys")
    keys = []
    for i, item in enumerate(value):
        where = f"args.keys[{i}]"
        if isinstance(item, str):
            try:
                raw = base64.b64decode(item.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise OpError("bad_args", "not valid base64", where) from None
        elif isinstance(item, bytes):
            raw = item
        else:
            raise OpError("bad_args", "must be a base64 string", where)
        if len(raw) != TICKET_KEY_BYTES:
            raise OpError(
                "bad_args", f"a ticket key is {TICKET_KEY_BYTES} bytes, got {len(raw)}", where
            )
        keys.append(raw)
    return keys


ArgSpec = dict[str, tuple[type | tuple[type, ...], bool]]
_PROFILE: ArgSpec = {"profile": (str, False)}
_LIMIT: ArgSpec = {"limit": (int, False)}


def build_ops(
    view: RuntimeView,
    *,
    bus: EventBus | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> OpTable:
    """The op table bound to ``view``; events (``nf.profile``) go to ``bus`` or ``view.bus``."""
    o = _Ops(view, bus if bus is not None else getattr(view, "bus", None) or NullBus(), wall_clock)
    table = OpTable([])
    ops = [
        Op("nf.ops", lambda a, c: table.describe(), "list the ops and their arguments"),
        Op("nf.status", o.status, "version, uptime, config file, interfaces, gen"),
        Op("nf.stats", o.stats, "every counter, per-profile statistics"),
        Op("tls.profile.get", o.profile_get, "a profile's settings", _PROFILE),
        Op(
            "tls.profile.set",
            o.profile_set,
            "change profile keys live (same rules as the config file); bumps gen",
            _PROFILE,
            extra_args=True,
        ),
        Op(
            "tls.sessions.list",
            o.sessions_list,
            "cached sessions (never secrets)",
            _PROFILE | _LIMIT,
        ),
        Op("tls.sessions.flush", o.sessions_flush, "drop every cached session", _PROFILE),
        Op(
            "tls.tickets.list",
            o.tickets_list,
            "ticket keys: names, states (never key bytes)",
            _PROFILE,
        ),
        Op("tls.tickets.rotate", o.tickets_rotate, "new current ticket key", _PROFILE),
        Op(
            "tls.tickets.import",
            o.tickets_import,
            "install base64 80-byte ticket keys (secure endpoint only)",
            _PROFILE | {"keys": (list, True)},
        ),
        Op(
            "tls.tickets.export",
            o.tickets_export,
            "the ticket keys, base64 (secure endpoint only)",
            _PROFILE,
        ),
        Op("flows.list", o.flows_list, "open TCP flows", _LIMIT),
        Op("vips.list", o.vips_list, "virtual IPs and their virtual servers"),
        Op(
            "capture.start",
            o.capture_start,
            "start writing frames to path (format=pcapng|pcap; pcapng embeds TLS secrets and "
            "handshake verdicts; secure endpoint only)",
            {
                "path": (str, True),
                "format": (str, False),
                "max_bytes": (int, False),
                "files": (int, False),
                "secrets": (bool, False),
                "comments": (bool, False),
                "resolution": (str, False),
            },
        ),
        Op(
            "capture.stop",
            o.capture_stop,
            "stop one capture (path=...) or all",
            {"path": (str, False)},
        ),
        Op("capture.status", o.capture_status, "running captures: files, frames, bytes, drops"),
    ]
    table.ops = {op.name: op for op in ops}
    return table


__all__ = [
    "Op",
    "OpError",
    "OpTable",
    "RequestContext",
    "RuntimeView",
    "build_ops",
    "decode_keys",
]
