"""The example packet stage on crafted frames, and a chain that mixes it with stream stages."""

from __future__ import annotations

from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether

from pipeline.chain import Direction, PacketChain, PluginEnv, build_chain
from pipeline.errors import ConfigError
from tests.example_plugin.installed import ensure_installed

ensure_installed()
from tapnf_example_rot13.pingblock import PingBlock  # noqa: E402 - importable once installed

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:0a:10")


@pytest.mark.parametrize(
    "frame,direction,passes",
    [
        (ETH / IP(dst="192.0.2.10") / ICMP(type=8), "in", False),
        (ETH / IP(dst="192.0.2.10", options=b"\x01" * 4) / ICMP(type=8), "in", False),
        (ETH / IPv6(dst="2001:db8::10") / ICMPv6EchoRequest(), "in", False),
        (ETH / IP(dst="192.0.2.10") / ICMP(type=0), "in", True),
        (ETH / IPv6(dst="2001:db8::10") / ICMPv6EchoReply(), "in", True),
        (ETH / IP(dst="192.0.2.10") / ICMP(type=8), "out", True),
        (ETH / IP(dst="192.0.2.10") / TCP(dport=443), "in", True),
        (ETH / ARP(pdst="192.0.2.10"), "in", True),
    ],
)
def test_drops_echo_requests_only(frame: Ether, direction: Direction, passes: bool) -> None:
    stage = PingBlock(None, PluginEnv())
    raw = bytes(frame)
    assert stage.on_frame(memoryview(raw), direction, 0.0) is passes
    assert stage.dropped == (0 if passes else 1)


def test_truncated_frames_pass_untouched() -> None:
    stage = PingBlock(None, PluginEnv())
    raw = bytes(ETH / IP(dst="192.0.2.10") / ICMP(type=8))
    for n in range(len(raw) - 8):
        stage.on_frame(raw[:n], "in", 0.0)  # never raises


def test_a_chain_mixes_packet_and_stream_stages() -> None:
    specs = ["pingblock", "tls:p", "rot13", "echo"]
    chain = build_chain(specs, PluginEnv(), find=_fake_tls, name="vs_mix")
    assert chain.name == "vs_mix"
    assert [type(p).__name__ for p in chain.packet_stages] == ["PingBlock"]
    assert [type(p).__name__ for p in chain.plugins] == ["FakeTls", "Rot13Plugin", "EchoPlugin"]
    packets = PacketChain(chain.packet_stages)
    assert not packets.run(bytes(ETH / IP() / ICMP(type=8)), "in", 0.0)


def test_a_chain_of_packet_stages_only_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one stream stage"):
        build_chain(["pingblock"], PluginEnv(), path="virtual_servers[0].chain")


class FakeTls:
    def __init__(self, arg: str | None, env: PluginEnv) -> None: ...

    def new_stage(self, next_stage: object) -> object:
        return next_stage


def _fake_tls(name: str) -> Any:
    from pipeline.chain import find_plugin

    return FakeTls if name == "tls" else find_plugin(name)
