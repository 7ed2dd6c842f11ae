"""A closed TLS flow's state goes when the TCP stack lets go of the stage: no reference cycle
keeps the engine connection and the next stage waiting for a garbage collection."""

from __future__ import annotations

import gc
import weakref

from tests.plugins.tls.engine_harness import client_context, new_client
from tests.plugins.tls.test_stage_chain import make_lab, run


def test_closed_stage_is_freed_without_the_garbage_collector() -> None:
    lab = make_lab()
    stage, down, _ = lab.open("http")
    page = run(new_client(client_context()), stage, down, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200" in page
    conn = stage.conn  # type: ignore[attr-defined]
    refs = [weakref.ref(stage), weakref.ref(conn), weakref.ref(stage.next_stage)]  # type: ignore[attr-defined]
    del conn
    enabled = gc.isenabled()
    gc.disable()
    try:
        stage.on_close("fin", 0.0)
        del stage
        assert [r() for r in refs] == [None, None, None]
    finally:
        if enabled:
            gc.enable()


def test_next_stage_writing_after_close_is_ignored() -> None:
    lab = make_lab()
    stage, down, _ = lab.open("echo")
    run(new_client(client_context()), stage, down, b"x")
    encrypting = stage.encrypting  # type: ignore[attr-defined]
    stage.on_close("fin", 0.0)
    down.take()
    encrypting.send(b"late")
    encrypting.close()
    encrypting.abort("late")
    assert down.take() == b"" and down.aborted is None
