"""A finished connection is freed by reference counting alone: no reference cycle between the
connection, its handshake and its record layer (a cycle left every connection to the cyclic GC,
about 5 µs per resumed handshake and its memory held until a collection)."""

from __future__ import annotations

import gc
import ssl
import weakref
from collections.abc import Iterator

import pytest

from tests.plugins.tls.engine_harness import Server, client_context, handshake, profile


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _freed_without_gc(server: Server, ctx: ssl.SSLContext, session: ssl.SSLSession | None) -> bool:
    client, conn, _ = handshake(server, ctx, session=session)
    ref = weakref.ref(conn)
    hs_ref = weakref.ref(conn._hs)
    del conn
    return ref() is None and hs_ref() is None and client.obj is not None


@pytest.mark.parametrize("tickets", [False, True])
def test_full_and_resumed_connections_need_no_gc(no_cyclic_gc: None, tickets: bool) -> None:
    server = Server(profile(session_ticket=tickets))
    ctx = client_context(options=0 if tickets else ssl.OP_NO_TICKET)
    client, conn, _ = handshake(server, ctx)
    session = client.obj.session
    assert conn.handshake_complete
    assert _freed_without_gc(server, ctx, None)  # full
    assert _freed_without_gc(server, ctx, session)  # resumed


def test_failed_connection_needs_no_gc(no_cyclic_gc: None) -> None:
    server = Server(profile())
    conn = server.connect()
    conn.receive_data(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")  # truncated ClientHello
    assert conn.data_to_send()  # the fatal alert
    ref = weakref.ref(conn)
    del conn
    assert ref() is None
