"""Peer misbehaviour never raises out of the data path: random segments in every state."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import DecodeError
from pipeline.tcp import TcpConfig
from pipeline.wire.tcp import ACK, FIN, TcpRepr
from tests.pipeline.tcp.tcp_harness import CPORT, PORT, StackDriver

C = 1000

segments = st.builds(
    TcpRepr,
    src_port=st.sampled_from([CPORT, CPORT + 1]),
    dst_port=st.sampled_from([PORT, 8]),
    seq=st.one_of(st.integers(0, 2**32 - 1), st.integers(C - 5, C + 3000)),
    ack=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 0x1FF),
    window=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=300),
    mss=st.none() | st.integers(0, 0xFFFF),
    wscale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=3
    ).map(tuple),
    timestamp=st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(segments, st.floats(0, 3.0)), max_size=25),
    st.sampled_from(["echo", "close"]),
)
def test_random_segments_never_raise_and_tables_stay_bounded(
    steps: list[tuple[TcpRepr, float]], mode: str
) -> None:
    d = StackDriver(
        TcpConfig(max_flows=4, syn_backlog=2, syn_cookie_threshold=5),
        **({"echo": True} if mode == "echo" else {"close_on": b"x"}),
    )
    s = d.handshake(isn=C, sack_permitted=True, timestamp=(1, 0)).seq + 1
    d.send(seq=C + 1, ack=s, flags=ACK, payload=b"hello x", timestamp=(2, 0))
    for seg, dt in steps:
        try:
            raw = seg.emit(d.client, d.vip)
        except DecodeError:
            continue  # more options than a header holds: not a segment
        d.send_raw(raw)
        d.tick(dt)
        assert len(d.stack) <= 4
        d.stack.flows()
    d.send(seq=C + 8, ack=s, flags=ACK | FIN)
    d.tick(400.0)  # every timer runs out; nothing is left behind
    assert len(d.stack) == 0 and d.stack.poll_at() is None
    assert len(d.rec.closed) == len(d.rec.opened)  # on_close exactly once per opened flow
    assert d.counters["tcp.internal_errors"] == 0
