"""Handshake codec: round trips, truncation, trailing bytes, extension rules, and a Hypothesis
property that the ClientHello parser only ever returns a message or raises our errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ApiError, DecodeError
from plugins.tls import messages as m
from plugins.tls.alerts import TlsAlert

ET = m.ExtensionType


def sample_hello(**kw: object) -> m.ClientHello:
    sni = b"example.test"
    exts = (
        (
            ET.server_name,
            (len(sni) + 3).to_bytes(2, "big") + b"\x00" + len(sni).to_bytes(2, "big") + sni,
        ),
        (ET.supported_groups, bytes.fromhex("0006001d00170018")),
        (ET.ec_point_formats, b"\x01\x00"),
        (ET.signature_algorithms, bytes.fromhex("000408040403")),
        (ET.alpn, bytes.fromhex("000c02683208687474702f312e31")),
        (ET.extended_master_secret, b""),
        (ET.encrypt_then_mac, b""),
        (ET.session_ticket, b"T" * 40),
        (ET.renegotiation_info, b"\x00"),
        (0x0A0A, b""),  # GREASE
        (0x1234, b"unknown"),
    )
    args: dict[str, object] = dict(
        version=0x0303,
        random=bytes(range(32)),
        session_id=b"S" * 32,
        cipher_suites=(0x0A0A, 0xC02B, 0xC02F, 0x00FF),
        compression_methods=b"\x00",
        extensions=exts,
    )
    args.update(kw)
    return m.ClientHello(**args)  # type: ignore[arg-type]


def test_client_hello_round_trip_and_extensions() -> None:
    ch = sample_hello()
    body = ch.emit()
    parsed = m.ClientHello.parse(body)
    assert parsed == ch
    assert parsed.emit() == body
    ext = m.parse_extensions(parsed)
    assert ext.sni == "example.test"
    assert ext.groups == (29, 23, 24)
    assert ext.signature_algorithms == (0x0804, 0x0403)
    assert ext.alpn == ("h2", "http/1.1")
    assert ext.ems and ext.etm
    assert ext.ticket == b"T" * 40
    assert ext.renegotiation_info == b""
    assert ext.unknown == (0x0A0A, 0x1234)


def test_client_hello_without_extensions_block() -> None:
    ch = sample_hello(extensions=(), has_extensions_block=False)
    parsed = m.ClientHello.parse(ch.emit())
    assert parsed.extensions == () and not parsed.has_extensions_block
    assert m.parse_extensions(parsed) == m.HelloExtensions()


def test_every_truncation_is_a_decode_error() -> None:
    body = sample_hello().emit()
    no_ext_len = len(sample_hello(extensions=(), has_extensions_block=False).emit())
    for n in range(len(body)):
        if n == no_ext_len:  # a hello that simply has no extensions block is valid
            assert m.ClientHello.parse(body[:n]).extensions == ()
            continue
        with pytest.raises(DecodeError):
            m.ClientHello.parse(body[:n])


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(DecodeError):
        m.ClientHello.parse(sample_hello().emit() + b"\x00")


def test_duplicate_extension_is_illegal_parameter() -> None:
    ch = sample_hello(
        extensions=((ET.extended_master_secret, b""), (ET.extended_master_secret, b""))
    )
    with pytest.raises(TlsAlert) as exc:
        m.ClientHello.parse(ch.emit())
    assert exc.value.reason == "duplicate_extension"
    assert exc.value.description.name == "illegal_parameter"


@pytest.mark.parametrize(
    ("ext", "error"),
    [
        ((ET.extended_master_secret, b"\x00"), DecodeError),
        ((ET.supported_groups, b"\x00\x03\x00\x17\x00"), DecodeError),
        ((ET.ec_point_formats, b"\x01\x01"), TlsAlert),
        ((ET.server_name, b"\x00\x00"), DecodeError),
        ((ET.alpn, b"\x00\x01\x00"), DecodeError),
        ((ET.supported_versions, b"\x03\x03\x04"), DecodeError),
    ],
)
def test_bad_extension_bodies(ext: tuple[int, bytes], error: type[Exception]) -> None:
    ch = m.ClientHello.parse(sample_hello(extensions=(ext,)).emit())
    with pytest.raises(error):
        m.parse_extensions(ch)


def test_odd_cipher_suites_length_rejected() -> None:
    body = bytearray(sample_hello(extensions=(), has_extensions_block=False).emit())
    # version(2) random(32) sid_len(1) sid(32) -> cipher suites length at offset 67
    body[67:69] = (3).to_bytes(2, "big")
    with pytest.raises(DecodeError):
        m.ClientHello.parse(bytes(body))


def test_server_hello_and_small_messages_round_trip() -> None:
    sh = m.ServerHello(bytes(32), b"\x01" * 32, 0xC02F, ((ET.extended_master_secret, b""),))
    assert m.ServerHello.parse(sh.emit()) == sh
    assert m.parse_new_session_ticket(m.new_session_ticket(7200, b"tick")) == (7200, b"tick")
    assert m.parse_client_key_exchange(m.client_key_exchange(b"\x04" * 65)) == b"\x04" * 65
    params = m.ecdhe_params(29, b"P" * 32)
    ske = m.server_key_exchange(params, 0x0804, b"sig")
    assert m.parse_server_key_exchange(ske) == (29, b"P" * 32, 0x0804, b"sig")
    for bad in (b"", b"\x00"):
        with pytest.raises(DecodeError):
            m.parse_client_key_exchange(bad)
    with pytest.raises(DecodeError):
        m.parse_finished(b"x" * 11)
    assert m.frame(20, b"abc") == b"\x14\x00\x00\x03abc"


@pytest.mark.parametrize(
    "exts",
    [
        (),
        ((ET.renegotiation_info, b"\x00"), (ET.extended_master_secret, b"")),
        (
            (ET.ec_point_formats, b"\x01\x00"),
            (ET.session_ticket, b""),
            (ET.alpn, b"\x00\x03\x02h2"),
        ),
    ],
)
@pytest.mark.parametrize("sid", [b"", b"\x07" * 32])
def test_server_hello_fast_emit_matches_the_codec(
    exts: tuple[tuple[int, bytes], ...], sid: bytes
) -> None:
    # The handshake builds ServerHello from a cached extensions block; same bytes as the codec.
    sh = m.ServerHello(bytes(range(32)), sid, 0xC02B, exts)
    fast = m.server_hello(sh.random, sid, 0xC02B, m.extensions_block(exts))
    assert fast == sh.emit()
    assert m.ServerHello.parse(fast) == sh
    with pytest.raises(ApiError):
        m.server_hello(bytes(32), b"x" * 33, 0xC02B, b"")


def test_small_message_bounds_are_api_errors() -> None:
    with pytest.raises(ApiError):
        m.new_session_ticket(1, bytes(0x10000))
    with pytest.raises(ApiError):
        m.new_session_ticket(-1, b"t")
    with pytest.raises(ApiError):
        m.server_key_exchange(b"p", 0x0403, bytes(0x10000))
    with pytest.raises(ApiError):
        m.frame(1, bytes(1 << 24))


def _parse_all(data: bytes) -> None:
    try:
        ch = m.ClientHello.parse(data)
    except (DecodeError, TlsAlert):
        return
    try:
        m.parse_extensions(ch)
    except (DecodeError, TlsAlert):
        return


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_property_random_bytes(data: bytes) -> None:
    _parse_all(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_property_mutated_hello(data: st.DataObject) -> None:
    body = bytearray(sample_hello().emit())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    _parse_all(bytes(body[:cut]))
