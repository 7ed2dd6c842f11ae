"""The forward stage against a fake connector: relay, close/abort mapping, back-pressure, config."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.chain import FlowInfo, PluginEnv, build_chain
from pipeline.errors import ConfigError
from plugins.apps.forward import ForwardPlugin, ForwardStage, forward_config, parse_backend
from tests.plugins.apps.forward_fakes import Down, FakeConn, FakeConnector


def open_stage(
    vs: dict[str, Any] | None = None, arg: str | None = None
) -> tuple[ForwardStage, Down, FakeConn, FlowInfo]:
    connector = FakeConnector()
    env = PluginEnv(vs=vs if vs is not None else {"backend": "127.0.0.1:8080"})
    env.shared["connector"] = connector
    stage = ForwardPlugin(arg, env).new_stage(None)
    assert isinstance(stage, ForwardStage)
    down = Down()
    flow = FlowInfo(conn=1, client=("192.0.2.1", 40000), vip=("192.0.2.10", 443), control=down)
    stage.on_open(flow, down, 0.0)
    (conn,) = connector.conns
    return stage, down, conn, flow


def test_relays_both_ways_and_reports_the_backend() -> None:
    stage, down, conn, flow = open_stage({"backend": "127.0.0.1:8080", "connect_timeout": 2})
    assert (conn.host, conn.port, conn.timeout) == ("127.0.0.1", 8080, 2.0)
    assert flow.facts["forward_backend"] == "127.0.0.1:8080"
    stage.receive_data(b"GET / HTTP/1.0\r\n\r\n", 0.1)  # before the backend connected: buffered
    stage.on_connected(0.2)
    assert conn.take() == b"GET / HTTP/1.0\r\n\r\n"
    stage.on_data(b"HTTP/1.0 200 OK\r\n\r\nhello", 0.3)
    assert bytes(down.data) == b"HTTP/1.0 200 OK\r\n\r\nhello"
    assert (stage.bytes_up, stage.bytes_down) == (18, 24)


def test_client_eof_shuts_the_backend_write_side_and_backend_eof_closes_the_client() -> None:
    stage, down, conn, _ = open_stage()
    stage.on_connected(0.0)
    stage.receive_data(b"request", 0.1)
    stage.receive_eof(0.2)
    assert conn.closed and not conn.aborted and not down.closed
    stage.on_data(b"response", 0.3)
    stage.on_eof(0.4)
    assert down.closed and down.aborted is None and bytes(down.data) == b"response"
    stage.on_close("fin", 0.5)
    assert not conn.aborted


def test_backend_eof_first_then_client_closes_normally() -> None:
    stage, down, conn, _ = open_stage()
    stage.on_connected(0.0)
    stage.on_eof(0.1)  # the backend closed after its response
    assert down.closed
    stage.on_close("closed", 0.2)  # our FIN acknowledged, client's FIN received
    assert conn.closed and not conn.aborted


@pytest.mark.parametrize("reason", ["backend_refused", "backend_timeout", "backend_reset"])
def test_backend_failure_aborts_the_client_flow_with_its_reason(reason: str) -> None:
    stage, down, conn, _ = open_stage()
    stage.receive_data(b"early", 0.0)
    stage.on_error(reason, 1.0)
    assert down.aborted == reason and not down.closed
    stage.receive_data(b"late", 1.1)  # the stack may still deliver: ignored, nothing raised
    stage.on_close(reason, 1.2)
    assert not conn.aborted  # the connector already dropped it; no second command


@pytest.mark.parametrize("reason", ["rst_received", "timeout", "plugin_error"])
def test_client_flow_ending_abnormally_aborts_the_backend(reason: str) -> None:
    stage, _, conn, _ = open_stage()
    stage.on_connected(0.0)
    stage.on_close(reason, 1.0)
    assert conn.aborted
    stage.on_data(b"after", 1.1)  # a callback racing the close does nothing


def test_slow_backend_pauses_the_client_until_drained() -> None:
    stage, down, conn, _ = open_stage({"backend": "127.0.0.1:80", "buffer": 8192})
    stage.on_connected(0.0)
    stage.receive_data(b"a" * 4096, 0.1)
    assert not down.paused
    stage.receive_data(b"b" * 4096, 0.2)
    assert down.paused  # 8192 bytes wait for the backend: stop reading the client
    conn.take(4096)
    assert down.paused  # still some queued
    conn.take()
    assert not down.paused
    assert bytes(conn.received) == b"a" * 4096 + b"b" * 4096


def test_slow_client_pauses_the_backend_until_acknowledged() -> None:
    stage, down, conn, _ = open_stage({"backend": "127.0.0.1:80", "buffer": 8192})
    stage.on_connected(0.0)
    stage.on_data(b"x" * 5000, 0.1)
    assert not conn.paused
    stage.on_data(b"y" * 5000, 0.2)
    assert conn.paused and down.drain is not None and down.drain[0] == 4096
    down.ack(5000)
    assert conn.paused  # 5000 queued > low water 4096
    down.ack(1000)
    assert not conn.paused


def test_a_client_failure_from_a_backend_callback_drops_both_sides() -> None:
    stage, down, conn, _ = open_stage()

    def broken(data: bytes) -> None:
        raise RuntimeError("bug")

    down.send = broken  # type: ignore[method-assign]
    stage.on_data(b"boom", 0.0)  # must not raise into the loop
    assert conn.aborted and down.aborted == "plugin_error"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:443", ("::1", 443)),
        ("[2001:db8::0001]:1", ("2001:db8::1", 1)),
    ],
)
def test_parse_backend(text: str, expected: tuple[str, int]) -> None:
    assert parse_backend(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "localhost:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:80", "[::1]80", 80],
)
def test_parse_backend_rejects(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_backend(text)


def test_stage_argument_overrides_the_virtual_server_option() -> None:
    cfg = forward_config("10.9.8.7:99", {"backend": "127.0.0.1:1"})
    assert (cfg.host, cfg.port, cfg.backend) == ("10.9.8.7", 99, "10.9.8.7:99")
    _, _, conn, _ = open_stage({}, arg="[::1]:8443")
    assert (conn.host, conn.port) == ("::1", 8443)


@pytest.mark.parametrize(
    "vs,message",
    [
        ({}, "needs a backend"),
        ({"backend": "127.0.0.1:80", "connect_timeout": 0}, "connect_timeout"),
        ({"backend": "127.0.0.1:80", "connect_timeout": True}, "connect_timeout"),
        ({"backend": "127.0.0.1:80", "buffer": 100}, "buffer"),
        ({"backend": "example.com:80"}, "not an IP address"),
    ],
)
def test_config_errors_name_the_chain_entry(vs: dict[str, Any], message: str) -> None:
    env = PluginEnv(vs=vs)
    env.shared["connector"] = FakeConnector()
    with pytest.raises(ConfigError) as info:
        build_chain(["forward"], env, path="virtual_servers[0].chain")
    assert info.value.path == "virtual_servers[0].chain[0]" and message in str(info.value)


def test_forward_needs_a_connector_and_must_be_last() -> None:
    with pytest.raises(ConfigError, match="connector"):
        build_chain(["forward"], PluginEnv(vs={"backend": "127.0.0.1:80"}))
    env = PluginEnv(vs={"backend": "127.0.0.1:80"})
    env.shared["connector"] = FakeConnector()
    chain = build_chain(["forward", "echo"], env)
    with pytest.raises(ValueError, match="must be last"):
        chain.new_connection()
