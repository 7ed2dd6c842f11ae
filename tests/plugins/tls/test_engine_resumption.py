"""Resumption through the engine with real clients: every reason code a TLS 1.2 client can
provoke, the ServerHello session ID rules (fresh 32-byte ID, empty with tickets, exact echo of
the client's ID on ticket resumption — the Ticketbleed lesson), strict_resume."""

from __future__ import annotations

import os

from plugins.tls import messages as m
from plugins.tls.server import Event, HandshakeComplete, HandshakeInfo
from tests.plugins.tls.engine_harness import (
    OP_NO_EXTENDED_MASTER_SECRET,
    Server,
    client_context,
    drain,
    handshake,
    profile,
)
from tests.plugins.tls.raw_client import RawClient, hello

ET = m.ExtensionType
HT = m.HandshakeType


def info_of(events: list[Event]) -> HandshakeInfo:
    [done] = [e for e in events if isinstance(e, HandshakeComplete)]
    return done.info


def test_cache_expired_with_fake_clock() -> None:
    server = Server(profile(cache_timeout=60))
    ctx = client_context()
    client, _, _ = handshake(server, ctx)
    server.clock.now += 61
    client2, _, events = handshake(server, ctx, session=client.obj.session)
    assert not client2.obj.session_reused
    assert (info_of(events).outcome, info_of(events).reason) == ("full", "cache_expired")


def test_cache_evicted_with_cache_size_one() -> None:
    server = Server(profile(cache_size=1))
    ctx = client_context()
    a, _, _ = handshake(server, ctx)
    handshake(server, ctx)  # evicts a's session
    a2, _, events = handshake(server, ctx, session=a.obj.session)
    assert not a2.obj.session_reused and info_of(events).reason == "cache_evicted"
    evicted = server.bus.of("tls.cache")
    assert evicted[0]["action"] == "evicted"
    assert a.obj.session is not None and evicted[0]["session_id"] == a.obj.session.id.hex()


def test_cipher_no_longer_offered() -> None:
    server = Server(profile())
    ctx = client_context("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")
    client, _, events = handshake(server, ctx)
    assert info_of(events).cipher == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    ctx.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384")
    client2, _, events2 = handshake(server, ctx, session=client.obj.session)
    assert not client2.obj.session_reused
    assert info_of(events2).reason == "cipher_mismatch"


def test_cipher_removed_from_profile_live() -> None:
    server = Server(profile())
    ctx = client_context("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")
    client, _, _ = handshake(server, ctx)
    server.runtime.set({"ciphers": ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]})
    client2, _, events = handshake(server, ctx, session=client.obj.session)
    assert not client2.obj.session_reused
    info = info_of(events)
    assert (info.reason, info.cipher) == (
        "cipher_mismatch",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    )


def test_ems_mismatch() -> None:
    server = Server(profile())
    ctx = client_context()
    client, _, events = handshake(server, ctx)
    assert info_of(events).ems
    ctx.options |= OP_NO_EXTENDED_MASTER_SECRET
    client2, _, events2 = handshake(server, ctx, session=client.obj.session)
    assert not client2.obj.session_reused
    info = info_of(events2)
    assert (info.reason, info.ems) == ("ems_mismatch", False)


def test_tickets_disabled_live_then_cache_fallback_is_stateless_miss() -> None:
    server = Server(profile(session_ticket=True))
    ctx = client_context()
    client, _, _ = handshake(server, ctx)
    server.runtime.set({"session_ticket": False})
    client2, _, events = handshake(server, ctx, session=client.obj.session)
    info = info_of(events)
    assert not client2.obj.session_reused
    assert (info.offered, info.reason, info.tickets_issued) == ("ticket", "tickets_disabled", 0)
    assert len(info.session_id) == 64  # stateful again: a fresh session ID


def test_ticket_from_erased_key() -> None:
    server = Server(profile(session_ticket=True, ticket_key_rotation=60, cache_timeout=120))
    ctx = client_context()
    client, _, _ = handshake(server, ctx)
    for _ in range(8):  # rotate, then let the retired key outlive every ticket it sealed
        server.clock.now += 60
        server.runtime.handle_timer(server.clock.now)
    actions = [e["action"] for e in server.bus.of("tls.tickets")]
    assert "erased" in actions
    server.clock.now -= 7 * 60  # the ticket itself would still be young: only the key is gone
    client2, _, events = handshake(server, ctx, session=client.obj.session)
    assert not client2.obj.session_reused
    info = info_of(events)
    assert (info.reason, info.tickets_issued) == ("ticket_unknown_key", 1)


def _raw_ticket(server: Server, session_id: bytes = b"") -> RawClient:
    c = RawClient(server.connect())
    c.send_hello(
        hello(extensions=(*hello().extensions, (ET.session_ticket, b"")), session_id=session_id)
    )
    c.send_key_exchange()
    c.send_ccs()
    c.send_finished()
    assert c.ticket is not None
    return c


def test_tampered_ticket_gets_full_handshake_and_new_ticket() -> None:
    server = Server(profile(session_ticket=True))
    first = _raw_ticket(server)
    assert first.ticket is not None
    bad = bytearray(first.ticket)
    bad[-1] ^= 1
    c = RawClient(server.connect())
    c.send_hello(
        hello(
            extensions=(*hello().extensions, (ET.session_ticket, bytes(bad))),
            session_id=os.urandom(32),
        )
    )
    c.send_key_exchange()
    c.send_ccs()
    c.send_finished()
    info = info_of(drain(c.conn))
    assert (info.outcome, info.reason, info.tickets_issued) == ("full", "ticket_invalid", 1)
    assert info.session_id == ""


def test_ticket_resumption_echoes_exact_client_session_id_length() -> None:
    server = Server(profile(session_ticket=True))
    first = _raw_ticket(server)
    drain(first.conn)
    for sid in (b"\x01", os.urandom(7), os.urandom(32)):
        c = RawClient(server.connect())
        c.master = first.master
        c.send_hello(
            hello(
                extensions=(*hello().extensions, (ET.session_ticket, first.ticket or b"")),
                session_id=sid,
            )
        )
        assert c.server_hello is not None and c.server_hello.session_id == sid
        kinds = [k for k, _ in c.messages]
        assert kinds == [HT.server_hello, -1, HT.finished]  # abbreviated: SH, CCS, Finished
        c.send_ccs()
        c.send_finished()
        info = info_of(drain(c.conn))
        assert (info.outcome, info.method, info.session_id) == ("resumed", "ticket", sid.hex())


def test_strict_resume_requires_close_notify() -> None:
    for strict, expect_reused in ((True, False), (False, True)):
        server = Server(profile(strict_resume=strict))
        ctx = client_context()
        client, conn, _ = handshake(server, ctx)
        conn.connection_lost(server.clock.now)  # transport gone without close_notify
        client2, _, events = handshake(server, ctx, session=client.obj.session)
        assert client2.obj.session_reused is expect_reused
        if strict:
            assert info_of(events).reason == "strict_resume"


def test_strict_resume_clean_close_keeps_session() -> None:
    server = Server(profile(strict_resume=True))
    ctx = client_context()
    client, conn, _ = handshake(server, ctx)
    try:
        client.obj.unwrap()
    except Exception:
        pass
    conn.receive_data(client.outgoing.read())
    conn.connection_lost(server.clock.now)
    client2, _, _ = handshake(server, ctx, session=client.obj.session)
    assert client2.obj.session_reused


def test_full_handshake_without_signature_algorithms_uses_sha1_default() -> None:
    server = Server(profile(certs=("rsa",)))
    c = RawClient(server.connect())
    c.send_hello(hello(extensions=((ET.supported_groups, bytes.fromhex("0002001d")),)))
    assert c.ske is not None and c.ske[2] == 0x0201  # rsa_pkcs1_sha1
    c.send_key_exchange()
    c.send_ccs()
    c.send_finished()
    info = info_of(drain(c.conn))
    assert info.outcome == "full" and not info.ems


def test_cache_disabled_and_cache_miss_reasons() -> None:
    server = Server(profile(cache_size=0))
    ctx = client_context()
    client, _, _ = handshake(server, ctx)
    _, _, events = handshake(server, ctx, session=client.obj.session)
    assert (info_of(events).offered, info_of(events).reason) == ("none", "nothing_offered")
    c = RawClient(server.connect())  # a session ID the server never issued
    c.send_hello(hello(session_id=os.urandom(32)))
    c.send_key_exchange()
    c.send_ccs()
    c.send_finished()
    info = info_of(drain(c.conn))
    assert (info.offered, info.reason, info.session_id) == ("session_id", "cache_disabled", "")
    cached = Server(profile())
    c2 = RawClient(cached.connect())
    c2.send_hello(hello(session_id=os.urandom(32)))
    c2.send_key_exchange()
    c2.send_ccs()
    c2.send_finished()
    info2 = info_of(drain(c2.conn))
    assert (info2.reason, len(info2.session_id)) == ("cache_miss", 64)


def test_ticket_expired_with_fake_clock() -> None:
    server = Server(profile(session_ticket=True, session_ticket_timeout=300))
    ctx = client_context()
    client, _, _ = handshake(server, ctx)
    server.clock.now += 301
    client2, _, events = handshake(server, ctx, session=client.obj.session)
    assert not client2.obj.session_reused
    info = info_of(events)
    assert (info.reason, info.tickets_issued) == ("ticket_expired", 1)
