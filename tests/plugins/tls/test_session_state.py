"""SessionState: compact msgpack round trip; decode accepts nothing else and raises only
DecodeError; secrets stay out of reprs."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import DecodeError
from plugins.tls.session import SessionState

S = SessionState(0x0303, 0xC02F, bytes(range(48)), True, "tapnf.lab", "http/1.1", 1.7e9 + 0.25)


def test_round_trip_and_size() -> None:
    data = S.encode()
    assert SessionState.decode(data) == S
    assert len(data) < 100
    bare = SessionState(0x0303, 0xC02F, b"\x00" * 48, False, None, None, 0.0)
    assert SessionState.decode(bare.encode()) == bare
    assert len(bare.encode()) <= 70


def test_repr_hides_master_secret() -> None:
    assert "master_secret" not in repr(S) and bytes(range(48)).hex() not in repr(S)


def _pack(*fields: object) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        _pack(1, 2, 3),
        msgpack.packb({"version": 771}),
        _pack(-1, 0xC02F, b"\x00" * 48, True, None, None, 1.0),
        _pack(0x0303, 0x10000, b"\x00" * 48, True, None, None, 1.0),
        _pack(0x0303, 0xC02F, b"\x00" * 47, True, None, None, 1.0),
        _pack(0x0303, 0xC02F, "x" * 48, True, None, None, 1.0),
        _pack(0x0303, 0xC02F, b"\x00" * 48, 1, None, None, 1.0),
        _pack(0x0303, 0xC02F, b"\x00" * 48, True, "", None, 1.0),
        _pack(0x0303, 0xC02F, b"\x00" * 48, True, "x" * 256, None, 1.0),
        _pack(0x0303, 0xC02F, b"\x00" * 48, True, None, b"h2", 1.0),
        _pack(0x0303, 0xC02F, b"\x00" * 48, True, None, None, float("nan")),
        _pack(0x0303, 0xC02F, b"\x00" * 48, True, None, None, -5.0),
        _pack(True, 0xC02F, b"\x00" * 48, True, None, None, 1.0),
        S.encode()[:-1],
        S.encode() + b"\x00",
        b"\x00" * 5000,
    ],
)
def test_decode_rejects(data: bytes) -> None:
    with pytest.raises(DecodeError):
        SessionState.decode(data)


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
