"""The example plugin's stage on its own, and built into a chain by name like any plugin."""

from __future__ import annotations

import pytest

from pipeline.chain import FlowInfo, PluginEnv, build_chain
from pipeline.errors import ConfigError
from plugins.apps.echo import EchoPlugin
from tests.example_plugin.installed import ensure_installed

ensure_installed()
import tapnf_example_rot13  # noqa: E402 - importable once installed


class Down:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def send(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self, reason: str) -> None:
        raise AssertionError(reason)


def run(direction: str | None, payload: bytes) -> tuple[bytes, FlowInfo, Down]:
    plugin = tapnf_example_rot13.Rot13Plugin(direction, PluginEnv())
    stage = plugin.new_stage(EchoPlugin(None, PluginEnv()).new_stage(None))
    flow = FlowInfo(conn=1, client=("192.0.2.1", 1), vip=("192.0.2.10", 2))
    down = Down()
    stage.on_open(flow, down, 0.0)
    stage.receive_data(payload, 0.0)
    stage.receive_eof(0.0)
    return bytes(down.data), flow, down


@pytest.mark.parametrize(
    "direction,expected",
    [("up", b"Uryyb, gncas! 123"), ("down", b"Uryyb, gncas! 123"), ("both", b"Hello, tapnf! 123")],
)
def test_directions_through_echo(direction: str, expected: bytes) -> None:
    out, flow, down = run(direction, b"Hello, tapnf! 123")
    assert out == expected and down.closed and flow.facts["rot13"] == direction


def test_found_by_name_from_its_entry_point() -> None:
    chain = build_chain(["rot13:up", "echo"], PluginEnv())
    assert isinstance(chain.plugins[0], tapnf_example_rot13.Rot13Plugin)


def test_bad_direction_is_a_config_error_naming_the_entry() -> None:
    with pytest.raises(ConfigError) as info:
        build_chain(["rot13:sideways", "echo"], PluginEnv(), path="vs[3].chain")
    assert info.value.path == "vs[3].chain[0]"
