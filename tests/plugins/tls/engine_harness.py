"""Test support for the TLS engine: lab certificates made in-process, profiles, a resumption
runtime with a fake clock, and a pump that runs Python's ``ssl`` client (over MemoryBIO) against a
``TlsServerConnection``."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.events import ListBus
from plugins.tls.certs import CertResolver
from plugins.tls.keylog import ListKeyLog
from plugins.tls.labcerts import self_signed
from plugins.tls.profile import CertPair, TlsProfile
from plugins.tls.resumption import ProfileRuntime
from plugins.tls.server import Event, TlsServerConnection

OP_NO_EXTENDED_MASTER_SECRET = 1 << 0  # OpenSSL 3 SSL_OP_NO_EXTENDED_MASTER_SECRET
OP_NO_ENCRYPT_THEN_MAC = 1 << 19  # OpenSSL 3 SSL_OP_NO_ENCRYPT_THEN_MAC


@functools.cache
def cert_pair(kind: str, name: str = "tapnf.test") -> CertPair:
    """A self-signed pair: kind is rsa | p256 | p384."""
    cert, key = self_signed({"p256": "ecdsa-p256", "p384": "ecdsa-p384"}.get(kind, kind), name)
    return CertPair((cert,), key, (name,))


def profile(certs: tuple[str, ...] = ("rsa", "p256"), **kw: Any) -> TlsProfile:
    return TlsProfile(name="test", certs=tuple(cert_pair(k) for k in certs), **kw)


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Server:
    """A profile runtime plus everything a connection needs; ``connect()`` makes connections."""

    profile: TlsProfile
    clock: Clock = field(default_factory=Clock)
    bus: ListBus = field(default_factory=ListBus)
    keylog: ListKeyLog = field(default_factory=ListKeyLog)
    runtime: ProfileRuntime = field(init=False)
    resolver: CertResolver = field(init=False)

    def __post_init__(self) -> None:
        self.runtime = ProfileRuntime(
            self.profile, bus=self.bus, rng=os.urandom, wall_clock=self.clock
        )
        self.resolver = CertResolver.from_pairs(self.profile.certs)

    def connect(self) -> TlsServerConnection:
        return TlsServerConnection(self.runtime, self.resolver, os.urandom, self.keylog)


def drain(conn: TlsServerConnection) -> list[Event]:
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def client_context(
    ciphers: str | None = None, options: int = 0, keylog: str | None = None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    ctx.options |= options
    if keylog:
        ctx.keylog_filename = keylog
    return ctx


@dataclass
class Client:
    obj: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO


def new_client(
    ctx: ssl.SSLContext, server_hostname: str | None = None, session: ssl.SSLSession | None = None
) -> Client:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname, session=session)
    return Client(obj, incoming, outgoing)


def pump(
    client: Client,
    conn: TlsServerConnection,
    step: Callable[[], bool],
    clock: Clock | None = None,
    rounds: int = 50,
) -> list[Event]:
    """Move bytes both ways until ``step()`` returns True and nothing is in flight."""
    events: list[Event] = []
    done = False
    for _ in range(rounds):
        if not done:
            try:
                done = step()
            except ssl.SSLWantReadError:
                done = False
        out = client.outgoing.read()
        if out:
            conn.receive_data(out, clock.now if clock else 0.0)
        back = conn.data_to_send()
        if back:
            client.incoming.write(back)
        events.extend(drain(conn))
        if done and not out and not back:
            return events
    raise AssertionError("pump did not settle")


def handshake(
    server: Server,
    ctx: ssl.SSLContext,
    server_hostname: str | None = None,
    session: ssl.SSLSession | None = None,
) -> tuple[Client, TlsServerConnection, list[Event]]:
    client = new_client(ctx, server_hostname, session)
    conn = server.connect()

    def step() -> bool:
        client.obj.do_handshake()
        return True

    events = pump(client, conn, step, server.clock)
    return client, conn, events


def read_client(client: Client, conn: TlsServerConnection, n: int) -> bytes:
    """Flush the server's pending bytes to the client and read up to ``n`` bytes."""
    back = conn.data_to_send()
    if back:
        client.incoming.write(back)
    buf = bytearray()
    for _ in range(1000):
        try:
            chunk = client.obj.read(n - len(buf))
        except ssl.SSLWantReadError:
            break
        if not chunk:
            break
        buf += chunk
        if len(buf) >= n:
            break
    return bytes(buf)
