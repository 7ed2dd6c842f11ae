"""In-process interop with Python's ``ssl`` (OpenSSL) client over MemoryBIO: every suite x group x
certificate type, application data both ways, EMS/EtM on and off, key log lines equal to the
client's, and resumption by session ID and by ticket proven by ``session_reused``."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.tls.ciphers import SUITES
from plugins.tls.server import (
    ApplicationData,
    CloseNotify,
    Event,
    HandshakeComplete,
    TlsServerConnection,
)
from tests.plugins.tls.engine_harness import (
    OP_NO_ENCRYPT_THEN_MAC,
    OP_NO_EXTENDED_MASTER_SECRET,
    Client,
    Server,
    client_context,
    drain,
    handshake,
    profile,
    read_client,
)

# IANA name -> OpenSSL name, for set_ciphers
OPENSSL_NAMES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384": "ECDHE-ECDSA-AES256-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384": "ECDHE-RSA-AES256-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
OPENSSL_SUITE_NAMES = {v: k for k, v in OPENSSL_NAMES.items()}


def _exchange(server: Server, client: Client, conn: TlsServerConnection) -> None:
    """Application data both ways, including a multi-record payload."""
    big = bytes(range(256)) * 300  # 76800 bytes: several records
    client.obj.write(b"ping" + big)
    conn.receive_data(client.outgoing.read(), server.clock.now)
    got = b"".join(e.data for e in drain(conn) if isinstance(e, ApplicationData))
    assert got == b"ping" + big
    conn.send(b"pong" + big)
    assert read_client(client, conn, 4 + len(big)) == b"pong" + big


def _complete(events: list[Event]) -> HandshakeComplete:
    done = [e for e in events if isinstance(e, HandshakeComplete)]
    assert len(done) == 1, events
    return done[0]


CASES = [
    (suite.name, group, cert)
    for suite in SUITES
    for group in ("x25519", "secp256r1", "secp384r1")
    for cert in (("rsa",) if suite.auth == "RSA" else ("p256", "p384"))
]


@pytest.mark.parametrize(("suite", "group", "cert"), CASES)
def test_full_handshake_suite_group_cert(suite: str, group: str, cert: str, tmp_path: Path) -> None:
    server = Server(profile(certs=("rsa", cert), groups=(group,)))
    keylog = tmp_path / "client.keys"
    ctx = client_context(OPENSSL_NAMES[suite], keylog=str(keylog))
    client, conn, events = handshake(server, ctx)
    info = _complete(events).info
    cipher = client.obj.cipher()
    assert cipher is not None and cipher[0] == OPENSSL_NAMES[suite]
    assert client.obj.version() == "TLSv1.2"
    assert (info.outcome, info.cipher, info.group, info.version) == ("full", suite, group, "1.2")
    assert info.ems is True
    _exchange(server, client, conn)
    client_lines = [ln for ln in keylog.read_text().splitlines() if ln.startswith("CLIENT_RANDOM")]
    assert client_lines == server.keylog.lines


@pytest.mark.parametrize("suite", [s.name for s in SUITES if s.bulk == "cbc"][:4])
@pytest.mark.parametrize("options", [OP_NO_ENCRYPT_THEN_MAC, OP_NO_EXTENDED_MASTER_SECRET])
def test_cbc_without_etm_and_without_ems(suite: str, options: int) -> None:
    server = Server(profile())
    client, conn, events = handshake(server, client_context(OPENSSL_NAMES[suite], options))
    info = _complete(events).info
    assert info.ems is (options != OP_NO_EXTENDED_MASTER_SECRET)
    _exchange(server, client, conn)


def test_server_cipher_preference() -> None:
    client_order = "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-GCM-SHA384"
    client_pref = Server(profile())
    _, _, events = handshake(client_pref, client_context(client_order))
    assert _complete(events).info.cipher == "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
    server_pref = Server(profile(server_cipher_preference=True))
    _, _, events = handshake(server_pref, client_context(client_order))
    assert _complete(events).info.cipher == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"


def test_alpn_and_sni() -> None:
    server = Server(profile(alpn=("http/1.1",)))
    ctx = client_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    client, _, events = handshake(server, ctx, server_hostname="tapnf.test")
    info = _complete(events).info
    assert client.obj.selected_alpn_protocol() == "http/1.1"
    assert (info.alpn, info.sni) == ("http/1.1", "tapnf.test")


def test_resume_by_session_id() -> None:
    server = Server(profile(session_ticket=False))
    ctx = client_context()
    client, conn, events = handshake(server, ctx)
    first = _complete(events).info
    assert first.outcome == "full" and len(first.session_id) == 64
    assert first.reason == "nothing_offered"
    session = client.obj.session
    client2, conn2, events2 = handshake(server, ctx, session=session)
    info = _complete(events2).info
    assert client2.obj.session_reused
    assert (info.outcome, info.method, info.reason, info.offered) == (
        "resumed",
        "session_id",
        "resumed",
        "session_id",
    )
    assert info.session_id == first.session_id == info.client_session_id
    assert info.group is None and info.history == "csgfgi"
    _exchange(server, client2, conn2)
    assert server.keylog.lines[0].split()[2] == server.keylog.lines[1].split()[2]  # same master


def test_resume_by_ticket_echoes_client_session_id() -> None:
    server = Server(profile(session_ticket=True))
    ctx = client_context()
    client, _, events = handshake(server, ctx)
    first = _complete(events).info
    assert (first.session_id, first.tickets_issued) == ("", 1)
    assert first.ticket_key is not None and first.history == "csxkkgitgf"
    client2, conn2, events2 = handshake(server, ctx, session=client.obj.session)
    info = _complete(events2).info
    assert client2.obj.session_reused
    assert (info.outcome, info.method, info.offered) == ("resumed", "ticket", "ticket")
    assert info.session_id == info.client_session_id and info.client_session_id != ""
    assert info.ticket_age_s is not None and info.tickets_issued == 0
    _exchange(server, client2, conn2)


def test_resume_after_key_rotation_reissues_ticket() -> None:
    server = Server(profile(session_ticket=True))
    ctx = client_context()
    client, _, _ = handshake(server, ctx)
    server.runtime.tickets_rotate(server.clock.now)
    client2, _, events = handshake(server, ctx, session=client.obj.session)
    info = _complete(events).info
    assert client2.obj.session_reused and info.method == "ticket"
    assert info.tickets_issued == 1 and "t" in info.history
    client3, _, events3 = handshake(server, ctx, session=client2.obj.session)
    assert client3.obj.session_reused and _complete(events3).info.tickets_issued == 0


def test_resumption_refused_when_cache_disabled() -> None:
    server = Server(profile(cache_size=0))
    ctx = client_context()
    client, _, events = handshake(server, ctx)
    assert _complete(events).info.session_id == ""
    client2, _, _ = handshake(server, ctx, session=client.obj.session)
    assert not client2.obj.session_reused


def test_sni_mismatch_forces_full_handshake() -> None:
    server = Server(profile())
    ctx = client_context()
    client, _, _ = handshake(server, ctx, server_hostname="a.tapnf.test")
    client2, _, events = handshake(server, ctx, "b.tapnf.test", session=client.obj.session)
    info = _complete(events).info
    assert not client2.obj.session_reused
    assert (info.outcome, info.reason) == ("full", "sni_mismatch")


def test_close_notify_both_ways() -> None:
    server = Server(profile())
    client, conn, _ = handshake(server, client_context())
    try:
        client.obj.unwrap()
    except Exception:
        pass
    conn.receive_data(client.outgoing.read(), server.clock.now)
    events = drain(conn)
    assert any(isinstance(e, CloseNotify) for e in events)
    assert conn.close_notify_sent and conn.close_notify_received
    client.incoming.write(conn.data_to_send())
    client.obj.unwrap()  # the client accepts our close_notify


@pytest.mark.parametrize("tickets", [False, True])
@pytest.mark.parametrize("suite", ["ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"])
def test_cbc_resumption_keeps_etm(suite: str, tickets: bool) -> None:
    server = Server(profile(session_ticket=tickets))
    ctx = client_context(suite)
    client, _, _ = handshake(server, ctx)
    client2, conn2, events = handshake(server, ctx, session=client.obj.session)
    info = _complete(events).info
    assert client2.obj.session_reused and info.outcome == "resumed"
    _exchange(server, client2, conn2)
