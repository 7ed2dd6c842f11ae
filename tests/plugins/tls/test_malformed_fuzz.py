"""Hypothesis over whole connections: a valid client flight with random mutations, cuts and
splits never makes the engine raise; every failure is an alert on the wire plus events."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.tls import messages as m
from plugins.tls.server import AlertSent, HandshakeComplete, HandshakeFailed
from tests.plugins.tls.engine_harness import Server, drain, profile
from tests.plugins.tls.raw_client import RawClient, hello

ET = m.ExtensionType


FIRST: dict[str, bytes] = {}


@pytest.fixture(scope="module")
def server() -> Server:
    return Server(profile(session_ticket=True, alpn=("http/1.1",)))


def _flights(server: Server) -> tuple[bytes, bytes]:
    """A recorded client first flight, and the second flight of the same connection."""
    c = RawClient(server.connect())
    sent: list[bytes] = []
    real = c.send_raw

    def spy(data: bytes) -> None:
        sent.append(data)
        real(data)

    c.send_raw = spy  # type: ignore[method-assign]
    ch = hello(
        extensions=(
            *hello().extensions,
            (ET.session_ticket, b""),
            (ET.alpn, bytes.fromhex("000908687474702f312e31")),
            (ET.server_name, bytes.fromhex("000c0000096c61622e7461706e66")),
        ),
        session_id=os.urandom(32),
    )
    c.send_hello(ch)
    first = b"".join(sent)
    sent.clear()
    c.send_key_exchange()
    c.send_ccs()
    c.send_finished()
    assert any(isinstance(e, HandshakeComplete) for e in drain(c.conn))
    return first, b"".join(sent)


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_first_flight(server: Server, data: st.DataObject) -> None:
    if "flight" not in FIRST:
        FIRST["flight"] = _flights(server)[0]
    first = FIRST["flight"]
    wire = bytearray(first)
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(wire)))
    conn = server.connect()
    step = data.draw(st.integers(1, 64))
    for off in range(0, cut, step):
        conn.receive_data(bytes(wire[off : off + step]))
    out = conn.data_to_send()
    events = drain(conn)
    failed = [e for e in events if isinstance(e, HandshakeFailed)]
    assert len(failed) <= 1
    if failed:
        assert [e for e in events if isinstance(e, AlertSent)]
        assert out[-7:-2] == b"\x15\x03\x03\x00\x02" and out[-2] == 2


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_second_flight(server: Server, data: st.DataObject) -> None:
    c = RawClient(server.connect())
    sent: list[bytes] = []
    c.send_hello()
    real = c.send_raw
    c.send_raw = lambda data: sent.append(data)  # type: ignore[method-assign]
    c.send_key_exchange()
    c.send_ccs()
    c.send_finished()
    c.send_raw = real  # type: ignore[method-assign]
    wire = bytearray(b"".join(sent))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] ^= data.draw(st.integers(1, 255))
    c.conn.receive_data(bytes(wire))
    events = drain(c.conn)
    done = [e for e in events if isinstance(e, HandshakeComplete)]
    failed = [e for e in events if isinstance(e, HandshakeFailed)]
    assert len(done) + len(failed) <= 1
    if failed:
        assert [e for e in events if isinstance(e, AlertSent)]
