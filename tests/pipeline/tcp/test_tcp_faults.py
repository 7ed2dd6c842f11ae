"""A seeded fault-injecting in-process pair (drop, duplicate, reorder, corrupt) moves 5 MB intact."""

from __future__ import annotations

import hashlib
import random

import pytest

from pipeline.chain import PluginEnv, StreamChain
from pipeline.io.fault import FaultConfig, FaultInjector
from pipeline.tcp import State
from plugins.apps.echo import EchoPlugin
from tests.pipeline.tcp.tcp_harness import Pair, seeded

SIZE = 5_000_000


def echo_through(pair: Pair, data: bytes) -> None:
    sent = 0

    def done() -> bool:
        nonlocal sent
        c = pair.client
        if c.state is State.ESTABLISHED and sent < len(data) and c.send_queued < 262_144:
            n = min(65_536, len(data) - sent)
            c.send(data[sent : sent + n])
            sent += n
            if sent == len(data):
                c.close()
        return len(pair.received) >= len(data) and c.state in (State.TIME_WAIT, State.CLOSED)

    pair.run(done, max_time=900.0)


@pytest.mark.parametrize("seed", [11, 12])
def test_five_megabytes_echoed_intact_through_faults(seed: int) -> None:
    faults = FaultConfig(drop=0.03, duplicate=0.01, reorder=0.05, corrupt=0.01, delay=0.001)
    pair = Pair(StreamChain([EchoPlugin(None, PluginEnv())]), faults=faults, seed=seed)
    data = random.Random(seed).randbytes(SIZE)
    echo_through(pair, data)
    assert hashlib.sha256(pair.received).digest() == hashlib.sha256(data).digest()
    for link in (pair.up, pair.down):
        for kind in ("dropped", "duplicated", "reordered", "corrupted"):
            assert link.counters[f"fault.{kind}"] > 0
    assert pair.counters["drop.bad_checksum"] > 0  # corrupted segments were caught
    assert pair.counters["tcp.retransmits"] > 0
    pair.run(lambda: len(pair.stack) == 0, max_time=pair.now + 30)
    (closed,) = [e for e in pair.bus.of("tcp.flow") if e["action"] == "closed"]
    assert closed["reason"] == "fin" and closed["bytes_in"] == closed["bytes_out"] == SIZE
    assert closed["retransmits"] > 0 and closed["out_of_order"] > 0


def test_clean_link_moves_data_without_retransmissions() -> None:
    pair = Pair(StreamChain([EchoPlugin(None, PluginEnv())]), seed=3)
    data = random.Random(3).randbytes(1_000_000)
    echo_through(pair, data)
    assert bytes(pair.received) == data
    assert pair.counters["tcp.retransmits"] == 0 and pair.counters["drop.bad_checksum"] == 0


def test_fault_injector_is_reproducible_and_reorders() -> None:
    def run(seed: int) -> list[bytes]:
        f = FaultInjector(
            FaultConfig(drop=0.2, duplicate=0.2, reorder=0.3, corrupt=0.2), seeded(seed)
        )
        out: list[bytes] = []
        for i in range(200):
            f.push(i.to_bytes(2, "big") * 4, i * 0.001)
            out += f.pop_ready(i * 0.001)
        out += f.pop_ready(10.0)
        return out

    a, b = run(5), run(5)
    assert a == b and a != run(6)
    firsts = [int.from_bytes(p[:2], "big") for p in a]
    assert firsts != sorted(firsts)  # some packets were overtaken
    assert 150 < len(a) < 260


def test_fault_config_validates_probabilities() -> None:
    with pytest.raises(ValueError):
        FaultConfig(drop=1.5)
