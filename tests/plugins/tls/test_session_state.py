"""SessionState: fixed-layout round trip; decode accepts nothing else and raises only
DecodeError; encode never raises and marks what it cannot hold; secrets stay out of reprs."""

from __future__ import annotations

import struct
from dataclasses import replace

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import DecodeError
from plugins.tls.session import UNRESUMABLE, SessionState

S = SessionState(0x0303, 0xC02F, bytes(range(48)), True, "tapnf.lab", "http/1.1", 1.7e9 + 0.25)
HEAD = struct.Struct(">HHBI48sB")


def test_round_trip_and_size() -> None:
    data = S.encode()
    assert SessionState.decode(data) == replace(S, created=1.7e9)  # whole seconds
    assert len(data) == 59 + len("tapnf.lab") + len("http/1.1")
    bare = SessionState(0x0303, 0xC02F, b"\x00" * 48, False, None, None, 0.0)
    assert SessionState.decode(bare.encode()) == bare
    assert len(bare.encode()) == 59


def test_layout_is_the_documented_one() -> None:
    expected = HEAD.pack(0x0303, 0xC02F, 1, 1_700_000_000, bytes(range(48)), 9)
    assert S.encode() == expected + b"tapnf.lab" + b"\x08http/1.1"


def test_names_round_trip_byte_for_byte() -> None:
    s = replace(S, sni="x" * 255, alpn="".join(map(chr, range(1, 256))), created=2.0**32 - 1)
    assert SessionState.decode(s.encode()) == s
    s = replace(S, sni="bücher.example", alpn=None, ems=False, created=0.0)
    assert SessionState.decode(s.encode()) == s


def test_repr_hides_master_secret() -> None:
    assert "master_secret" not in repr(S) and bytes(range(48)).hex() not in repr(S)


def _raw(
    flags: int = 1,
    sni: bytes = b"a.lab",
    alpn: bytes = b"h2",
    sni_len: int | None = None,
    alpn_len: int | None = None,
) -> bytes:
    """A state in the layout, with lengths that may lie."""
    head = HEAD.pack(
        0x0303, 0xC02F, flags, 5, b"\x00" * 48, len(sni) if sni_len is None else sni_len
    )
    return head + sni + bytes((len(alpn) if alpn_len is None else alpn_len,)) + alpn


def test_raw_helper_builds_valid_states() -> None:
    assert SessionState.decode(_raw()) == SessionState(
        0x0303, 0xC02F, b"\x00" * 48, True, "a.lab", "h2", 5.0
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x03",
        _raw()[:58],  # shorter than the fixed part
        _raw(flags=2),  # an unknown flag
        _raw(flags=0x81),
        UNRESUMABLE,
        _raw(sni_len=6),  # SNI runs into the ALPN length
        _raw(sni_len=200),  # SNI runs past the end
        _raw(alpn_len=3),  # ALPN longer than what is left
        _raw(alpn_len=1),  # trailing bytes after ALPN
        _raw(alpn=b"", alpn_len=0) + b"\x00",
        _raw(sni=b"\xff\xfe"),  # SNI not UTF-8
        _raw(sni=b"\xed\xa0\x80"),  # an encoded surrogate is not UTF-8 either
        S.encode()[:-1],
        S.encode() + b"\x00",
        b"\x00" * 5000,
        # What the msgpack encoding before this one produced (a ticket sealed by an older
        # release): refused, so such a ticket falls back to a full handshake.
        msgpack.packb(
            [0x0303, 0xC02F, b"\x00" * 48, True, "a.lab", None, 1.0e9], use_bin_type=True
        ),
    ],
)
def test_decode_rejects(data: bytes) -> None:
    with pytest.raises(DecodeError):
        SessionState.decode(data)


@pytest.mark.parametrize(
    "state",
    [
        replace(S, sni=""),
        replace(S, sni="x" * 256),
        replace(S, sni="é" * 128),  # 128 characters, 256 bytes
        replace(S, sni="\ud800"),  # a lone surrogate
        replace(S, alpn=""),
        replace(S, alpn="x" * 256),
        replace(S, alpn="ħ2"),  # not latin-1: no ALPN id decodes to it
        replace(S, created=-5.0),
        replace(S, created=float("nan")),
        replace(S, created=float("inf")),
        replace(S, created=2.0**32),
        replace(S, master_secret=b"\x00" * 47),
        replace(S, version=0x10000),
        replace(S, cipher_suite=-1),
    ],
)
def test_states_the_layout_cannot_hold_encode_as_unresumable(state: SessionState) -> None:
    assert state.encode() == UNRESUMABLE
    with pytest.raises(DecodeError):
        SessionState.decode(state.encode())


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(min_size=48, max_size=48),
    st.booleans(),
    st.none() | st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=63),
    st.none() | st.text(st.characters(max_codepoint=255), min_size=1, max_size=255),
    st.floats(0, 2.0**32 - 1),
)
def test_every_holdable_state_round_trips(
    version: int,
    suite: int,
    secret: bytes,
    ems: bool,
    sni: str | None,
    alpn: str | None,
    created: float,
) -> None:
    s = SessionState(version, suite, secret, ems, sni, alpn, created)
    assert SessionState.decode(s.encode()) == replace(s, created=float(int(created)))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_decode_random_bytes_returns_or_raises_decode_error(data: bytes) -> None:
    try:
        SessionState.decode(data)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=4), st.integers(0, 90))
def test_corrupted_encodings(patch: bytes, at: int) -> None:
    data = bytearray(S.encode())
    data[at % len(data) : at % len(data) + len(patch)] = patch
    try:
        got = SessionState.decode(bytes(data))
    except DecodeError:
        return
    assert isinstance(got, SessionState)
