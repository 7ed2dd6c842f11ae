"""Malformed and hostile input: each case gives the right alert on the wire, one failure event with
a precise reason, and leaves other connections untouched."""

from __future__ import annotations

import os
import ssl

import pytest

from plugins.tls import messages as m
from plugins.tls.alerts import REASON_ALERTS, AlertDescription, alert_for
from plugins.tls.record import CT_ALERT, CT_APPLICATION_DATA, CT_CHANGE_CIPHER_SPEC, CT_HANDSHAKE
from plugins.tls.server import (
    AlertSent,
    ApplicationData,
    Event,
    HandshakeComplete,
    HandshakeFailed,
    TlsServerConnection,
)
from tests.plugins.tls.engine_harness import Server, client_context, drain, handshake, profile
from tests.plugins.tls.raw_client import RawClient, hello, record

ET = m.ExtensionType
HT = m.HandshakeType
A = AlertDescription


@pytest.fixture(scope="module")
def server() -> Server:
    return Server(profile())


def failure(events: list[Event]) -> tuple[str, str | None]:
    failed = [e for e in events if isinstance(e, HandshakeFailed)]
    assert len(failed) == 1, events
    return failed[0].info.reason, failed[0].info.alert


def expect_alert(client: RawClient, desc: AlertDescription, reason: str) -> None:
    events = drain(client.conn)
    assert client.alerts[-1] == (2, desc), (client.alerts, events)
    sent = [e for e in events if isinstance(e, AlertSent)]
    assert sent and sent[-1].reason == reason and sent[-1].description == desc.name
    if not client.conn.handshake_complete:
        assert failure(events) == (reason, desc.name)
    # after a fatal alert the connection is dead: input is ignored, nothing more is sent
    client.conn.receive_data(b"\x16\x03\x03\x00\x01\x01")
    assert client.conn.data_to_send() == b""


def fresh(server: Server) -> RawClient:
    return RawClient(server.connect())


# ---- record layer ----------------------------------------------------------------------------
def test_fragmented_records_and_message_spanning_records(server: Server) -> None:
    c = fresh(server)
    raw = m.frame(HT.client_hello, hello().emit())
    wire = b"".join(record(CT_HANDSHAKE, raw[i : i + 7]) for i in range(0, len(raw), 7))
    for i in range(0, len(wire), 3):  # and the records themselves arrive in 3-byte pieces
        c.send_raw(wire[i : i + 3])
    assert [t for t, _ in c.messages][:4] == [
        HT.server_hello,
        HT.certificate,
        HT.server_key_exchange,
        HT.server_hello_done,
    ]


def test_partial_message_after_a_whole_one_is_held_for_the_next_record(server: Server) -> None:
    # One record: the ClientHello and the first 3 bytes of another message. The hello is
    # answered; the held tail joins the next record into a message the state does not accept.
    c = fresh(server)
    tail = m.frame(HT.finished, bytes(12))
    c.send_raw(record(CT_HANDSHAKE, m.frame(HT.client_hello, hello().emit()) + tail[:3]))
    assert [t for t, _ in c.messages][:4] == [
        HT.server_hello,
        HT.certificate,
        HT.server_key_exchange,
        HT.server_hello_done,
    ]
    c.send_raw(record(CT_HANDSHAKE, tail[3:]))
    expect_alert(c, A.unexpected_message, "unexpected_finished_in_expect_client_key_exchange")
    c2 = fresh(server)
    c2.send_raw(record(CT_HANDSHAKE, m.frame(HT.client_hello, hello().emit()) + tail[:3]))
    c2.send_raw(record(CT_CHANGE_CIPHER_SPEC, b"\x01"))
    expect_alert(c2, A.unexpected_message, "ccs_mid_message")


def test_coalesced_client_flight(server: Server) -> None:
    c = fresh(server)
    c.send_hello()
    c.conn.receive_data(b"")  # nothing happens on empty input
    # key exchange, CCS and Finished in one TCP payload
    sent: list[bytes] = []
    real = c.send_raw
    c.send_raw = lambda data: sent.append(data)  # type: ignore[method-assign]
    c.send_key_exchange()
    c.send_ccs()
    c.send_finished()
    c.send_raw = real  # type: ignore[method-assign]
    c.send_raw(b"".join(sent))
    assert any(isinstance(e, HandshakeComplete) for e in drain(c.conn))


def test_oversized_record(server: Server) -> None:
    c = fresh(server)
    c.send_raw(bytes([CT_HANDSHAKE, 3, 3]) + (2**14 + 1).to_bytes(2, "big") + bytes(2**14 + 1))
    expect_alert(c, A.record_overflow, "record_overflow")


def test_truncated_hello_waits_then_wrong_length_is_decode_error(server: Server) -> None:
    c = fresh(server)
    body = hello().emit()
    c.send_raw(record(CT_HANDSHAKE, m.frame(HT.client_hello, body)[:50]))
    assert c.conn.data_to_send() == b"" and not c.alerts  # waiting for the rest
    c2 = fresh(server)
    c2.send_raw(record(CT_HANDSHAKE, m.frame(HT.client_hello, body[:-3])))  # inner lengths lie
    expect_alert(c2, A.decode_error, "decode_error")


def test_huge_handshake_length(server: Server) -> None:
    c = fresh(server)
    c.send_raw(record(CT_HANDSHAKE, b"\x01\xff\xff\xff"))
    expect_alert(c, A.decode_error, "handshake_too_large")


def test_sslv2_hello_refused(server: Server) -> None:
    c = fresh(server)
    c.send_raw(b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + bytes(37))
    expect_alert(c, A.protocol_version, "sslv2_hello")


def test_bad_content_type(server: Server) -> None:
    c = fresh(server)
    c.send_raw(record(99, b"x"))
    expect_alert(c, A.unexpected_message, "record_bad_content_type")


# ---- ClientHello contents --------------------------------------------------------------------
def _tls13_only() -> m.ClientHello:
    h = hello()
    return m.ClientHello(
        0x0303,
        h.random,
        b"",
        (0x1301,),
        b"\x00",
        h.extensions + ((ET.supported_versions, b"\x02\x03\x04"),),
    )


@pytest.mark.parametrize(
    ("ch", "desc", "reason"),
    [
        (_tls13_only(), A.protocol_version, "tls13_only"),
        (hello(version=0x0301), A.protocol_version, "version_too_old"),
        (
            hello(suites=(0xC02F, 0x5600), version=0x0302),
            A.inappropriate_fallback,
            "inappropriate_fallback",
        ),
        (hello(suites=(0x009C, 0x1301)), A.handshake_failure, "no_shared_cipher"),
        (
            hello(extensions=((ET.supported_groups, bytes.fromhex("0002001e")),)),
            A.handshake_failure,
            "no_shared_group",
        ),
        (
            hello(extensions=((ET.renegotiation_info, b"\x01\x00"),)),
            A.handshake_failure,
            "bad_renegotiation_info",
        ),
        (
            hello(extensions=((ET.ec_point_formats, b"\x01\x01"),)),
            A.illegal_parameter,
            "no_uncompressed_point_format",
        ),
        (
            hello(
                extensions=(
                    (ET.signature_algorithms, bytes.fromhex("00020201")),
                    (ET.supported_groups, bytes.fromhex("00020017")),
                )
            ),
            A.handshake_failure,
            "no_usable_certificate",
        ),
    ],
)
def test_bad_client_hello(
    server: Server, ch: m.ClientHello, desc: AlertDescription, reason: str
) -> None:
    c = fresh(server)
    c.send_hello(ch)
    expect_alert(c, desc, reason)


def test_no_null_compression(server: Server) -> None:
    h = hello()
    c = fresh(server)
    c.send_hello(m.ClientHello(h.version, h.random, b"", h.cipher_suites, b"\x01", h.extensions))
    expect_alert(c, A.illegal_parameter, "no_null_compression")


def test_duplicate_extension(server: Server) -> None:
    c = fresh(server)
    c.send_hello(
        hello(extensions=((ET.extended_master_secret, b""), (ET.extended_master_secret, b"")))
    )
    expect_alert(c, A.illegal_parameter, "duplicate_extension")


def test_alpn_without_overlap(server: Server) -> None:
    s = Server(profile(alpn=("h2",)))
    c = fresh(s)
    c.send_hello(hello(extensions=((ET.alpn, bytes.fromhex("000908687474702f312e31")),)))
    expect_alert(c, A.no_application_protocol, "no_application_protocol")


def test_grease_and_unknown_extensions_tolerated(server: Server) -> None:
    h = hello()
    c = fresh(server)
    c.send_hello(
        m.ClientHello(
            0x0303,
            h.random,
            b"",
            (0x2A2A, *h.cipher_suites),
            b"\x00",
            ((0x3A3A, b""), *h.extensions, (0xFEED, b"whatever")),
        )
    )
    assert c.server_hello is not None and not c.alerts


# ---- later states ----------------------------------------------------------------------------
def test_invalid_key_share(server: Server) -> None:
    c = fresh(server)
    c.send_hello()
    c.send_key_exchange(point=bytes(32))  # all-zero x25519 point: low order
    expect_alert(c, A.illegal_parameter, "bad_key_share")


def test_bad_finished(server: Server) -> None:
    c = fresh(server)
    c.send_hello()
    c.send_key_exchange()
    c.send_ccs()
    c.send_finished(b"\x00" * 12)
    expect_alert(c, A.decrypt_error, "bad_finished")


def test_ccs_before_keys(server: Server) -> None:
    c = fresh(server)
    c.send_raw(record(CT_CHANGE_CIPHER_SPEC, b"\x01"))
    expect_alert(c, A.unexpected_message, "ccs_before_keys")
    c2 = fresh(server)
    c2.send_hello()
    c2.send(CT_CHANGE_CIPHER_SPEC, b"\x01")
    expect_alert(c2, A.unexpected_message, "ccs_before_keys")


def test_ccs_with_bad_payload(server: Server) -> None:
    c = fresh(server)
    c.send_hello()
    c.send_key_exchange()
    c.send(CT_CHANGE_CIPHER_SPEC, b"\x02")
    expect_alert(c, A.decode_error, "ccs_bad_payload")


def test_app_data_before_handshake(server: Server) -> None:
    c = fresh(server)
    c.send_raw(record(CT_APPLICATION_DATA, b"GET /"))
    expect_alert(c, A.unexpected_message, "app_data_before_handshake")


def _to_state(server: Server, state: str) -> RawClient:
    c = fresh(server)
    if state == "expect_client_hello":
        return c
    c.send_hello()
    if state == "expect_client_key_exchange":
        return c
    c.send_key_exchange()
    if state == "expect_change_cipher_spec":
        return c
    c.send_ccs()
    return c


WRONG = {
    "expect_client_hello": [HT.client_key_exchange, HT.finished, HT.certificate],
    "expect_client_key_exchange": [HT.client_hello, HT.finished, HT.certificate_verify],
    "expect_change_cipher_spec": [HT.client_hello, HT.finished, HT.client_key_exchange],
    "expect_finished": [HT.client_hello, HT.client_key_exchange, HT.certificate],
}


@pytest.mark.parametrize(("state", "msg"), [(s, t) for s, ts in WRONG.items() for t in ts])
def test_unexpected_message_in_each_state(server: Server, state: str, msg: int) -> None:
    c = _to_state(server, state)
    body = hello().emit() if msg == HT.client_hello else b"\x00" * 12
    c.send_handshake(msg, body)
    expect_alert(c, A.unexpected_message, f"unexpected_{HT(msg).name}_in_{state}")


def test_bad_record_mac_after_handshake() -> None:
    server = Server(profile())
    client, conn, _ = handshake(server, client_context())
    client.obj.write(b"secret request")
    wire = bytearray(client.outgoing.read())
    wire[-1] ^= 0x80
    conn.receive_data(bytes(wire))
    events = drain(conn)
    assert [e for e in events if isinstance(e, AlertSent)][0].reason == "bad_record_mac"
    assert not any(isinstance(e, HandshakeFailed | ApplicationData) for e in events)
    client.incoming.write(conn.data_to_send())
    with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):
        client.obj.read(100)


def test_renegotiation_refused_with_warning_and_connection_survives(server: Server) -> None:
    c = fresh(server)
    c.full_handshake()
    assert any(isinstance(e, HandshakeComplete) for e in drain(c.conn))
    c.send_handshake(HT.client_hello, hello().emit())
    assert c.alerts[-1] == (1, A.no_renegotiation)
    reneg = [e for e in drain(c.conn) if isinstance(e, HandshakeFailed)]
    assert [(e.info.reason, e.info.alert, e.info.history) for e in reneg] == [
        ("renegotiation_refused", "no_renegotiation", "ca")
    ]
    c.send(CT_APPLICATION_DATA, b"still here")
    assert [e.data for e in drain(c.conn) if isinstance(e, ApplicationData)] == [b"still here"]
    for _ in range(3):
        c.send_handshake(HT.client_hello, hello().emit())
    assert c.alerts[-1] == (2, A.unexpected_message)  # a renegotiation flood ends it


def test_fatal_alert_from_client_mid_handshake(server: Server) -> None:
    c = fresh(server)
    c.send_hello()
    c.send(CT_ALERT, bytes([2, A.handshake_failure]))
    assert failure(drain(c.conn)) == ("alert_received_handshake_failure", "handshake_failure")
    assert c.conn.data_to_send() == b""  # no alert answered to a fatal alert


def test_connections_are_independent() -> None:
    server = Server(profile())
    good = fresh(server)
    bad = fresh(server)
    good.send_hello()
    bad.send_hello()
    bad.send_raw(record(CT_APPLICATION_DATA, b"junk"))
    good.send_key_exchange()
    good.send_ccs()
    good.send_finished()
    assert any(isinstance(e, HandshakeComplete) for e in drain(good.conn))
    good.send(CT_APPLICATION_DATA, b"ok")
    assert [e.data for e in drain(good.conn) if isinstance(e, ApplicationData)] == [b"ok"]
    assert bad.conn.failed and not good.conn.failed


def test_random_garbage_never_raises() -> None:
    server = Server(profile())
    rnd = os.urandom
    for i in range(200):
        conn = TlsServerConnection(server.runtime, server.resolver, rnd)
        data = rnd(i % 64 + 1)
        prefix = bytes([CT_HANDSHAKE, 3, 3]) if i % 2 else b""
        conn.receive_data(prefix + data)
        conn.data_to_send()
        drain(conn)


@pytest.mark.parametrize("reason", sorted(REASON_ALERTS))
def test_reason_table(reason: str) -> None:
    assert alert_for(reason) == REASON_ALERTS[reason]
    assert alert_for("unexpected_finished_in_traffic") == A.unexpected_message


def test_warning_alert_mid_handshake_tolerated_but_bounded(server: Server) -> None:
    c = fresh(server)
    c.send_hello()
    c.send(CT_ALERT, bytes([1, A.user_canceled]))
    c.send_key_exchange()
    c.send_ccs()
    c.send_finished()
    assert any(isinstance(e, HandshakeComplete) for e in drain(c.conn))
    for _ in range(16):
        c.send(CT_ALERT, bytes([1, A.user_canceled]))
    expect_alert(c, A.unexpected_message, "warning_alert_flood")


def test_empty_record_flood(server: Server) -> None:
    c = fresh(server)
    c.full_handshake()
    for _ in range(32):
        c.send(CT_APPLICATION_DATA, b"")
    assert not c.alerts
    c.send(CT_APPLICATION_DATA, b"x")  # data resets the count
    for _ in range(33):
        c.send(CT_APPLICATION_DATA, b"")
    expect_alert(c, A.unexpected_message, "empty_record_flood")


def test_internal_error_becomes_alert_not_exception() -> None:
    server = Server(profile())

    def broken_decide(*args: object, **kw: object) -> None:
        raise RuntimeError("boom")

    server.runtime.decide = broken_decide  # type: ignore[method-assign,assignment]
    c = fresh(server)
    c.send_hello()
    expect_alert(c, A.internal_error, "internal_error")
