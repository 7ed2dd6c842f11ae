"""The ``tls:<profile>`` stage in a real chain (``tls`` -> ``http`` / ``echo``) driven by Python's
``ssl`` client: facts reach the app before its first byte, one ``tls.handshake`` event per
ClientHello with every schema field, alerts as ``tls.alert`` events, key log file, close paths."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.chain import FlowInfo, PluginEnv, StreamStage, build_chain
from pipeline.events import SCHEMA, ListBus
from tests.plugins.tls.engine_harness import Clock, client_context, new_client, profile


class Down:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted: str | None = None

    def send(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self, reason: str) -> None:
        self.aborted = reason

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


@dataclass
class Lab:
    env: PluginEnv
    bus: ListBus
    clock: Clock
    chains: dict[str, Any] = field(default_factory=dict)
    conns: int = 0

    def open(self, chain: str = "http") -> tuple[StreamStage, Down, FlowInfo]:
        self.conns += 1
        stage = self.chains[chain].new_connection()
        down = Down()
        flow = FlowInfo(
            conn=self.conns, client=("192.0.2.1", 40000 + self.conns), vip=("192.0.2.10", 443)
        )
        stage.on_open(flow, down, 0.0)
        return stage, down, flow


def make_lab(**profile_kw: Any) -> Lab:
    bus, clock = ListBus(), Clock()
    cpu = iter(range(10**6))
    config = SimpleNamespace(profiles={"cs": profile(**profile_kw)})
    env = PluginEnv(
        config=config,
        bus=bus,
        rng=os.urandom,
        wall_clock=clock,
        cpu_clock=lambda: next(cpu) * 0.001,
    )
    lab = Lab(env, bus, clock)
    lab.chains["http"] = build_chain(["tls:cs", "http"], env)
    lab.chains["echo"] = build_chain(["tls:cs", "echo"], env)
    return lab


def run(client: Any, stage: StreamStage, down: Down, request: bytes | None = None) -> bytes:
    """Handshake, optionally send ``request``, and return what the client reads back."""
    got = bytearray()
    sent = False
    for _ in range(60):
        try:
            client.obj.do_handshake()
            if request is not None and not sent:
                client.obj.write(request)
                sent = True
        except ssl.SSLWantReadError:
            pass
        out = client.outgoing.read()
        if out:
            stage.receive_data(out, 0.0)
        back = down.take()
        if back:
            client.incoming.write(back)
            for _ in range(100):
                try:
                    chunk = client.obj.read(65536)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    break
                if not chunk:
                    break
                got += chunk
        if not out and not back and (request is None or sent):
            break
    return bytes(got)


def test_http_over_tls_reports_facts_and_resumption() -> None:
    lab = make_lab()
    ctx = client_context()
    stage, down, flow = lab.open()
    client = new_client(ctx, "tapnf.test")
    page = run(client, stage, down, b"GET / HTTP/1.1\r\nHost: tapnf.test\r\n\r\n").decode()
    assert "tls_version: 1.2" in page and "tls_resumed: false" in page
    assert "tls_sni: tapnf.test" in page
    cipher = client.obj.cipher()
    assert cipher is not None and cipher[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"  # OpenSSL's first
    assert flow.facts["tls_cipher"] == "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    assert f"tls_cipher: {flow.facts['tls_cipher']}" in page
    stage2, down2, _ = lab.open()
    client2 = new_client(ctx, "tapnf.test", session=client.obj.session)
    page2 = run(client2, stage2, down2, b"GET / HTTP/1.1\r\nHost: tapnf.test\r\n\r\n").decode()
    assert client2.obj.session_reused
    assert "tls_resumed: true" in page2 and "tls_method: session_id" in page2
    events = lab.bus.of("tls.handshake")
    assert [e["outcome"] for e in events] == ["full", "resumed"]
    for e in events:
        assert set(e) == set(SCHEMA["tls.handshake"])
        assert e["cpu_us"] > 0
    assert events[0]["client"] == "192.0.2.1:40001" and events[0]["vip"] == "192.0.2.10:443"
    assert events[1]["session_id"] == events[0]["session_id"] != ""


def test_cpu_clock_is_read_only_while_someone_wants_handshake_events() -> None:
    """The process CPU clock is a system call: with no collector it is not read at all."""

    class Quiet(ListBus):
        def __init__(self) -> None:
            super().__init__()
            self.listening = False

        def wants(self, topic: str) -> bool:
            return self.listening

    reads = []
    bus = Quiet()
    env = PluginEnv(
        config=SimpleNamespace(profiles={"cs": profile()}),
        bus=bus,
        rng=os.urandom,
        wall_clock=Clock(),
        cpu_clock=lambda: reads.append(1) or len(reads) * 0.001,
    )
    chain = build_chain(["tls:cs", "echo"], env)
    for listening in (False, True):
        bus.listening = listening
        stage, down = chain.new_connection(), Down()
        stage.on_open(FlowInfo(conn=1, client=("192.0.2.1", 1), vip=("192.0.2.10", 443)), down, 0.0)
        run(new_client(client_context()), stage, down)
        if not listening:
            assert reads == [] and bus.events == []
    assert len(reads) == 4  # around the ClientHello and the client's last flight
    (event,) = bus.of("tls.handshake")
    assert event["cpu_us"] == 2000


def test_echo_over_tls_and_close_notify() -> None:
    lab = make_lab()
    stage, down, _ = lab.open("echo")
    client = new_client(client_context())
    assert run(client, stage, down, b"hello through tls") == b"hello through tls"
    try:
        client.obj.unwrap()
    except ssl.SSLWantReadError:
        pass
    stage.receive_data(client.outgoing.read(), 0.0)
    assert down.closed  # echo closes on close_notify (EOF); our close_notify went first
    client.incoming.write(down.take())
    client.obj.unwrap()
    stage.on_close("fin", 0.0)
    assert [e["direction"] for e in lab.bus.of("tls.alert")] == ["received", "sent"]


def test_garbage_gets_alert_event_and_close() -> None:
    lab = make_lab()
    stage, down, _ = lab.open()
    stage.receive_data(b"GET / HTTP/1.1\r\n\r\n", 0.0)
    assert down.closed
    assert down.take() == b"\x15\x03\x03\x00\x02\x02\x0a"  # fatal unexpected_message
    [hs] = lab.bus.of("tls.handshake")
    assert (hs["outcome"], hs["reason"], hs["alert"]) == (
        "failed",
        "record_bad_content_type",
        "unexpected_message",
    )
    [alert] = lab.bus.of("tls.alert")
    assert alert["reason"] == "record_bad_content_type" and alert["direction"] == "sent"


def test_transport_closed_mid_handshake_yields_failed_event() -> None:
    lab = make_lab()
    stage, down, _ = lab.open()
    client = new_client(client_context())
    try:
        client.obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    stage.receive_data(client.outgoing.read(), 0.0)  # ClientHello only
    stage.on_close("rst_received", 0.0)
    [hs] = lab.bus.of("tls.handshake")
    assert (hs["outcome"], hs["reason"]) == ("failed", "connection_rst_received")


def test_keylog_file_written_by_stage(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    lab = make_lab(keylog=str(path))
    client_log = tmp_path / "client.log"
    stage, down, _ = lab.open("echo")
    client = new_client(client_context(keylog=str(client_log)))
    run(client, stage, down, b"x")
    assert path.read_text().splitlines() == [
        ln for ln in client_log.read_text().splitlines() if ln.startswith("CLIENT_RANDOM")
    ]


def test_plugin_errors() -> None:
    lab = make_lab()
    with pytest.raises(Exception, match="no TLS profile"):
        build_chain(["tls:nope", "http"], lab.env)
    with pytest.raises(Exception, match="profile name"):
        build_chain(["tls", "http"], lab.env)
    with pytest.raises(ValueError):
        build_chain(["tls:cs"], lab.env).new_connection()


def test_handshake_timeout_aborts_and_reports() -> None:
    from plugins.tls.stage import HANDSHAKE_TIMEOUT

    lab = make_lab()
    stage, down, _ = lab.open()
    assert stage.poll_at() == HANDSHAKE_TIMEOUT
    stage.receive_data(b"\x16\x03\x01\x00\x40\x01", 0.0)  # a ClientHello that never finishes
    stage.handle_timer(HANDSHAKE_TIMEOUT - 1)
    assert down.aborted is None
    stage.handle_timer(HANDSHAKE_TIMEOUT)
    assert down.aborted == "tls_handshake_timeout"
    [hs] = lab.bus.of("tls.handshake")
    assert (hs["outcome"], hs["reason"]) == ("failed", "handshake_timeout")
    stage.on_close("aborted", HANDSHAKE_TIMEOUT)
    assert len(lab.bus.of("tls.handshake")) == 1  # still exactly one event
    assert stage.poll_at() is None


def test_established_connection_has_no_tls_timer() -> None:
    lab = make_lab()
    stage, down, _ = lab.open("echo")
    run(new_client(client_context()), stage, down, b"x")
    assert stage.poll_at() is None  # the echo app has no timers


class _Quiet(ListBus):
    """Keeps events but says nobody wants ``tls.handshake`` (no collector, no capture)."""

    def wants(self, topic: str) -> bool:
        return topic != "tls.handshake"


def test_handshake_event_nobody_wants_is_not_built_but_facts_still_flow() -> None:
    lab = make_lab()
    quiet = _Quiet()
    lab.env.bus = quiet
    stage, down, flow = lab.open()
    client = new_client(client_context(), "tapnf.test")
    page = run(client, stage, down, b"GET / HTTP/1.1\r\nHost: tapnf.test\r\n\r\n").decode()
    assert "tls_version: 1.2" in page and flow.facts["tls_resumed"] is False
    assert quiet.of("tls.handshake") == []
