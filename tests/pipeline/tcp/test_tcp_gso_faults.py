"""Segmentation offload under faults: super-segments are lost, duplicated and reordered as whole
units (as a userspace relay would), and the data still arrives intact."""

from __future__ import annotations

import hashlib
import random

import pytest

from pipeline.chain import PluginEnv, StreamChain
from pipeline.io.fault import FaultConfig
from pipeline.tcp.stack import GSO_MAX_PAYLOAD
from pipeline.wire.gso import GsoBytes
from plugins.apps.echo import EchoPlugin
from tests.pipeline.tcp.tcp_harness import Pair
from tests.pipeline.tcp.test_tcp_faults import echo_through


@pytest.mark.parametrize("seed", [21, 22])
def test_super_segments_through_faults_arrive_intact(seed: int) -> None:
    faults = FaultConfig(drop=0.03, duplicate=0.01, reorder=0.25, corrupt=0.01, delay=0.001)
    pair = Pair(StreamChain([EchoPlugin(None, PluginEnv())]), faults=faults, seed=seed)
    pair.stack.gso_max = GSO_MAX_PAYLOAD  # what TcpStack(gso=True) sets
    sizes: list[int] = []
    take = pair.stack.take_output

    def watched() -> list[tuple[bytes, bytes, bytes]]:
        out = take()
        sizes.extend(len(seg) for _, _, seg in out if isinstance(seg, GsoBytes))
        return out

    pair.stack.take_output = watched  # type: ignore[method-assign]
    data = random.Random(seed).randbytes(2_000_000)
    echo_through(pair, data)
    assert hashlib.sha256(pair.received).digest() == hashlib.sha256(data).digest()
    assert len(sizes) > 10 and max(sizes) > 4 * 1460, sizes[:20]  # offload really happened
    assert pair.counters["tcp.retransmits"] > 0 and pair.counters["tcp.internal_errors"] == 0
