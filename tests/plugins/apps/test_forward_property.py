"""Hypothesis over whole forward connections: any interleaving of client bytes, backend bytes,
acknowledgements, drains, EOFs, failures and closes never raises, relays bytes in order and
without loss up to the first failure, and never leaves a side paused once the other caught up."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.chain import FlowInfo, PluginEnv
from plugins.apps.forward import ForwardPlugin, ForwardStage
from tests.plugins.apps.forward_fakes import Down, FakeConnector

BUFFER = 4096

op = st.one_of(
    st.tuples(st.just("up"), st.integers(1, 3000)),
    st.tuples(st.just("take"), st.integers(1, 5000)),
    st.tuples(st.just("down"), st.integers(1, 3000)),
    st.tuples(st.just("ack"), st.integers(1, 5000)),
    st.tuples(st.just("connected"), st.just(0)),
    st.tuples(st.just("client_eof"), st.just(0)),
    st.tuples(st.just("backend_eof"), st.just(0)),
    st.tuples(st.sampled_from(["backend_refused", "backend_reset"]), st.just(0)),
    st.tuples(st.sampled_from(["fin", "rst_received"]), st.just(0)),
)


def pattern(start: int, n: int) -> bytes:
    return bytes((start + i) % 251 for i in range(n))


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=60))
def test_any_interleaving_relays_in_order_and_never_raises(ops: list[tuple[str, int]]) -> None:
    connector = FakeConnector()
    env = PluginEnv(vs={"backend": "127.0.0.1:9", "buffer": BUFFER})
    env.shared["connector"] = connector
    stage = ForwardPlugin(None, env).new_stage(None)
    assert isinstance(stage, ForwardStage)
    down = Down()
    stage.on_open(FlowInfo(1, ("192.0.2.1", 1), ("192.0.2.10", 443), control=down), down, 0.0)
    (conn,) = connector.conns
    up_sent = down_sent = 0
    errored = closed = backend_eof = client_eof = False
    want_conn_closed = want_conn_aborted = False
    want_down_abort: str | None = None
    state: dict[str, Any] = {}
    for kind, n in ops:
        live = not (errored or closed)
        if kind == "up" and live and not client_eof:
            if down.paused:
                n = min(n, 100)  # TLS may still hand over what one read decrypted
            stage.receive_data(pattern(up_sent, n), 0.0)
            up_sent += n
        elif kind == "take" and not conn.aborted:
            conn.take(n)
        elif kind == "down" and live and not backend_eof and not conn.paused:
            stage.on_data(pattern(down_sent, n), 0.0)
            down_sent += n
        elif kind == "ack":
            down.ack(min(n, down.queued))
        elif kind == "connected" and live and "connected" not in state:
            state["connected"] = True
            stage.on_connected(0.0)
        elif kind == "client_eof" and live and not client_eof:
            client_eof = want_conn_closed = True
            stage.receive_eof(0.0)
        elif kind == "backend_eof" and live and not backend_eof:
            backend_eof = True
            stage.on_eof(0.0)
        elif kind in ("backend_refused", "backend_reset") and live:
            errored, want_down_abort = True, kind
            stage.on_error(kind, 0.0)
            assert down.aborted == kind
        elif kind in ("fin", "rst_received") and not closed:
            closed = True
            stage.on_close(kind, 0.0)
            if not errored:  # a normal end after the backend's EOF closes it, else abort
                if kind == "fin" and backend_eof:
                    want_conn_closed = True
                else:
                    want_conn_aborted = True
    # nothing lost, nothing reordered, in either direction
    assert bytes(conn.received + conn.pending) == pattern(0, up_sent)
    assert bytes(down.data) == pattern(0, down_sent)
    assert (conn.closed, conn.aborted) == (want_conn_closed, want_conn_aborted)
    assert down.closed == backend_eof
    assert down.aborted == want_down_abort
    # once both sides caught up, nothing stays paused
    if not (errored or closed):
        conn.take()
        down.ack(down.queued)
        assert not down.paused and not conn.paused
