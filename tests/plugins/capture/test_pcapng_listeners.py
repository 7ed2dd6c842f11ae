"""The two taps a capture listens on: ``TeeBus`` (handshake verdicts) and the TLS stage's shared
key-log listener ``env.shared["keylog"]`` (secrets), driven by a real handshake through the stage."""

from __future__ import annotations

from pathlib import Path

from pipeline.events import ListBus, TeeBus
from plugins.tls.keylog import KeyLogTee, ListKeyLog
from tests.plugins.tls.engine_harness import client_context, new_client
from tests.plugins.tls.test_stage_chain import make_lab, run


def test_tee_bus_sends_every_event_to_primary_then_listeners() -> None:
    primary, a, b = ListBus(), ListBus(), ListBus()
    tee = TeeBus(primary, a)
    tee.listeners.append(b)
    tee.emit("tls.handshake", {"conn": 1})
    tee.emit("tcp.flow", {"conn": 1, "action": "opened"})
    assert primary.events == a.events == b.events
    assert [t for t, _ in primary.events] == ["tls.handshake", "tcp.flow"]
    tee.listeners.remove(a)
    tee.emit("nf.stats", {"counters": {}})
    assert len(a.events) == 2 and len(b.events) == 3


def test_keylog_tee_hands_each_line_to_every_log() -> None:
    one, two = ListKeyLog(), ListKeyLog()
    tee = KeyLogTee(one, two)
    tee.write_line("CLIENT_RANDOM aa bb")
    assert one.lines == two.lines == ["CLIENT_RANDOM aa bb"]


def test_tls_stage_feeds_shared_listener_and_profile_file(tmp_path: Path) -> None:
    """A real handshake (Python ssl client) through ``tls:cs -> echo``: the shared listener gets
    the very CLIENT_RANDOM line the client logged, alongside the profile's key log file."""
    path = tmp_path / "keys.log"
    lab = make_lab(keylog=str(path))
    shared = ListKeyLog()
    lab.env.shared["keylog"] = shared
    client_log = tmp_path / "client.log"
    stage, down, _ = lab.open("echo")
    client = new_client(client_context(keylog=str(client_log)))
    assert run(client, stage, down, b"x") == b"x"
    expected = [ln for ln in client_log.read_text().splitlines() if ln.startswith("CLIENT_RANDOM")]
    assert len(expected) == 1
    assert shared.lines == expected
    assert path.read_text().splitlines() == expected


def test_tls_stage_feeds_shared_listener_without_profile_file(tmp_path: Path) -> None:
    lab = make_lab()
    shared = ListKeyLog()
    lab.env.shared["keylog"] = shared
    stage, down, _ = lab.open("echo")
    run(new_client(client_context()), stage, down, b"x")
    assert len(shared.lines) == 1 and shared.lines[0].startswith("CLIENT_RANDOM ")


def test_inactive_shared_listener_is_skipped(tmp_path: Path) -> None:
    """While no capture wants secrets the stage leaves the listener out (no line formatted)."""
    path = tmp_path / "keys.log"
    lab = make_lab(keylog=str(path))
    shared = ListKeyLog()
    shared.active = False  # type: ignore[attr-defined]
    lab.env.shared["keylog"] = shared
    stage, down, _ = lab.open("echo")
    run(new_client(client_context()), stage, down, b"x")
    assert shared.lines == [] and len(path.read_text().splitlines()) == 1
    shared.active = True  # type: ignore[attr-defined]
    stage, down, _ = lab.open("echo")
    run(new_client(client_context()), stage, down, b"x")
    assert len(shared.lines) == 1
