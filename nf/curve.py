"""CurveZMQ for the control, event and fleet-push sockets: key files, server/client socket setup
and a ZAP authenticator that admits only the authorised client public keys and counts refusals.

Key files are the ZeroMQ certificate format (``zmq.auth``): ``NAME.key`` holds the public key,
``NAME.key_secret`` both keys. ``nf keys curve --out DIR`` writes a server pair, a client pair and
``DIR/authorized/`` holding the client's public key.
"""

from __future__ import annotations

import collections
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from pipeline.errors import ConfigError

ZAP_DOMAIN = "tapnf"


@dataclass(frozen=True)
class CurveConfig:
    """Server side of CURVE: our key pair and the public keys of the clients we admit."""

    public_key: bytes
    secret_key: bytes = field(repr=False)
    authorized_dir: Path
    secret_key_file: Path | None = None

    @classmethod
    def load(
        cls, secret_key_file: str | Path, authorized_dir: str | Path, path: str
    ) -> CurveConfig:
        public, secret = load_secret_pair(secret_key_file, f"{path}.curve_secret_key")
        adir = Path(authorized_dir)
        if not adir.is_dir():
            raise ConfigError(
                f"{path}.curve_authorized_keys",
                "must be a directory of client public keys (*.key)",
                str(authorized_dir),
            )
        return cls(public, secret, adir, Path(secret_key_file))

    def authorized_keys(self) -> list[bytes]:
        return sorted(zmq.auth.load_certificates(str(self.authorized_dir)).keys())


def load_secret_pair(key_file: str | Path, path: str) -> tuple[bytes, bytes]:
    """(public, secret) from a ``*.key_secret`` file; ConfigError names ``path`` otherwise."""
    try:
        public, secret = zmq.auth.load_certificate(str(key_file))
    except (OSError, ValueError) as exc:
        raise ConfigError(path, f"cannot load CURVE key: {exc}", str(key_file)) from None
    if secret is None:
        raise ConfigError(
            path, "file holds no secret key (use the *.key_secret file)", str(key_file)
        )
    return public, secret


def load_public_key(key_file: str | Path, path: str) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(str(key_file))
    except (OSError, ValueError) as exc:
        raise ConfigError(path, f"cannot load CURVE public key: {exc}", str(key_file)) from None
    return public


class _CountingAuthenticator(ThreadAuthenticator):
    """The pyzmq ZAP thread, counting the clients it refuses (read from the loop thread)."""

    def __init__(self, context: zmq.Context[Any], counters: collections.Counter[str]) -> None:
        super().__init__(context, log=_QuietLog())
        self._counters = counters
        self._lock = threading.Lock()

    def _send_zap_reply(
        self, request_id: bytes, status_code: bytes, status_text: bytes, user_id: str = "anonymous"
    ) -> None:
        with self._lock:
            self._counters[
                "control.curve_allowed" if status_code == b"200" else "control.curve_denied"
            ] += 1
        super()._send_zap_reply(request_id, status_code, status_text, user_id)


class _QuietLog:
    """zmq.auth logs every refusal; tapnf counts them instead."""

    def debug(self, *a: Any, **k: Any) -> None: ...
    def info(self, *a: Any, **k: Any) -> None: ...
    def warning(self, *a: Any, **k: Any) -> None: ...
    def error(self, *a: Any, **k: Any) -> None: ...
    def exception(self, *a: Any, **k: Any) -> None: ...


class CurveAuth:
    """One ZAP handler per ZeroMQ context (ZeroMQ allows one), started on first use and shared by
    every CURVE server socket of that context; each socket's allowed keys are a directory.
    Refusals are counted in ``counters`` (``control.curve_denied``)."""

    _by_context: dict[int, CurveAuth] = {}

    def __init__(self, context: zmq.Context[Any]) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self._auth = _CountingAuthenticator(context, self.counters)
        self._auth.start()
        self._users = 0

    def snapshot(self) -> dict[str, int]:
        """The counters, copied under the ZAP thread's lock (safe from the loop thread)."""
        with self._auth._lock:
            return dict(self.counters)

    @classmethod
    def for_context(cls, context: zmq.Context[Any]) -> CurveAuth:
        auth = cls._by_context.get(id(context))
        if auth is None:
            auth = cls._by_context[id(context)] = cls(context)
        auth._users += 1
        return auth

    def allow_dir(self, directory: Path) -> None:
        """Admit the public keys in ``directory`` (re-read on every call)."""
        self._auth.configure_curve(domain=ZAP_DOMAIN, location=str(directory))

    def release(self, context: zmq.Context[Any]) -> None:
        self._users -= 1
        if self._users <= 0:
            self._auth.stop()
            self._by_context.pop(id(context), None)


def make_server(sock: zmq.Socket[Any], curve: CurveConfig) -> None:
    """Turn ``sock`` into a CURVE server with our key pair (before bind)."""
    sock.curve_secretkey = curve.secret_key
    sock.curve_publickey = curve.public_key
    sock.curve_server = True
    sock.zap_domain = ZAP_DOMAIN.encode()


def secure_bind(
    ctx: zmq.Context[Any], sock: zmq.Socket[Any], endpoint: str, curve: CurveConfig | None
) -> CurveAuth | None:
    """Make ``sock`` a CURVE server when ``curve`` is set (authorised keys from its directory),
    then bind it. Returns the ZAP handler reference to release on close; on a bind failure that
    reference is released here and the error re-raised."""
    auth = None
    if curve is not None:
        auth = CurveAuth.for_context(ctx)
        auth.allow_dir(curve.authorized_dir)
        make_server(sock, curve)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError:
        if auth is not None:
            auth.release(ctx)
        raise
    return auth


def make_client(
    sock: zmq.Socket[Any], server_public: bytes, client_public: bytes, client_secret: bytes
) -> None:
    """Turn ``sock`` into a CURVE client of ``server_public`` (before connect)."""
    sock.curve_serverkey = server_public
    sock.curve_publickey = client_public
    sock.curve_secretkey = client_secret


def generate(out_dir: Path, client_name: str = "client") -> dict[str, Path]:
    """Write a server key pair, a client key pair and ``authorized/`` with the client public key."""
    out_dir.mkdir(parents=True, exist_ok=True)
    server_pub, server_sec = zmq.auth.create_certificates(str(out_dir), "server")
    client_pub, client_sec = zmq.auth.create_certificates(str(out_dir), client_name)
    authorized = out_dir / "authorized"
    authorized.mkdir(exist_ok=True)
    shutil.copy(client_pub, authorized / Path(client_pub).name)
    for secret in (server_sec, client_sec):
        Path(secret).chmod(0o600)
    return {
        "server_public": Path(server_pub),
        "server_secret": Path(server_sec),
        "client_public": Path(client_pub),
        "client_secret": Path(client_sec),
        "authorized": authorized,
    }


__all__ = [
    "CurveAuth",
    "CurveConfig",
    "generate",
    "load_public_key",
    "load_secret_pair",
    "make_client",
    "make_server",
    "secure_bind",
]
