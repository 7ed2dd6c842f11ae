"""CaptureManager (captures from config and live ops), ``[capture]`` config keys, and the runtime's
wiring: packet chain while capturing, events through a TeeBus, key log lines via env.shared."""

from __future__ import annotations

import collections
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scapy.compat import raw
from scapy.layers.l2 import ARP, Ether

from nf.config import load_config_data
from nf.ops import OpError, RequestContext, build_ops
from nf.runtime import Runtime
from pipeline.chain import PacketChain
from pipeline.errors import ConfigError
from pipeline.events import TeeBus
from pipeline.io.pcap import read_pcap
from plugins.capture.manager import CaptureManager
from plugins.capture.pcapng import read_pcapng
from plugins.tls.stage import TlsPlugin

ROOT = Path(__file__).resolve().parents[3]
PEER = "02:00:00:00:0b:01"
ARP_REQ = raw(
    Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER)
    / ARP(op=1, hwsrc=PEER, psrc="192.0.2.1", pdst="192.0.2.10")
)
LINE = "CLIENT_RANDOM " + "11" * 32 + " " + "22" * 48
CTX = RequestContext(secure=True)


def manager() -> tuple[CaptureManager, PacketChain]:
    chain = PacketChain()
    return CaptureManager(chain, wall_clock=lambda: 1_800_000_100.0, monotonic=lambda: 100.0), chain


def test_manager_joins_the_packet_chain_only_while_capturing(tmp_path: Path) -> None:
    m, chain = manager()
    assert chain.stages == []
    st = m.start(str(tmp_path / "a.pcapng"))
    assert st["format"] == "pcapng" and st["active"] and chain.stages == [m]
    m.start(str(tmp_path / "b.pcap"), format="pcap")
    assert chain.run(ARP_REQ, "in", 100.5)
    m.write_line(LINE)
    stopped = m.stop(str(tmp_path / "a.pcapng"))["stopped"]
    assert stopped[0]["counters"]["capture.frames"] == 1 and chain.stages == [m]
    assert [s["format"] for s in m.status()["captures"]] == ["pcap"]
    m.stop()
    assert chain.stages == [] and m.status() == {"captures": []}
    cap = read_pcapng(tmp_path / "a.pcapng")
    [pkt] = cap.packets
    assert pkt.data == ARP_REQ and pkt.seconds == pytest.approx(1_800_000_000.5)
    assert cap.secrets[0][1] == (LINE + "\n").encode()
    assert [f for _, f in read_pcap(tmp_path / "b.pcap")] == [ARP_REQ]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"format": "pcapx"}, "capture.format"),
        ({"max_bytes": 10}, "capture.max_bytes"),
        ({"files": 0}, "capture.files"),
        ({"format": "pcap", "files": 2}, "capture.files"),
        ({"resolution": "ms"}, "capture.resolution"),
    ],
)
def test_manager_refuses_bad_arguments(tmp_path: Path, kw: dict[str, Any], field: str) -> None:
    m, _ = manager()
    with pytest.raises(ConfigError) as exc:
        m.start(str(tmp_path / "x.pcapng"), **kw)
    assert exc.value.path == field


def test_manager_refuses_duplicates_unwritable_paths_and_too_many(tmp_path: Path) -> None:
    m, _ = manager()
    m.start(str(tmp_path / "a.pcapng"))
    with pytest.raises(ConfigError, match="already writing"):
        m.start(str(tmp_path / "." / "a.pcapng"))
    with pytest.raises(ConfigError, match="cannot open"):
        m.start(str(tmp_path / "missing-dir" / "b.pcapng"))
    for i in range(3):
        m.start(str(tmp_path / f"{i}.pcapng"))
    with pytest.raises(ConfigError, match="at most 4"):
        m.start(str(tmp_path / "five.pcapng"))
    with pytest.raises(ConfigError, match="no capture"):
        m.stop(str(tmp_path / "five.pcapng"))
    m.close()
    assert m.status() == {"captures": []}


def test_manager_wants_key_log_lines_only_while_a_capture_embeds_secrets(tmp_path: Path) -> None:
    m, _ = manager()
    assert not m.active
    m.start(str(tmp_path / "a.pcap"), format="pcap")
    m.start(str(tmp_path / "b.pcapng"), secrets=False)
    assert not m.active
    m.start(str(tmp_path / "c.pcapng"))
    assert m.active
    m.stop(str(tmp_path / "c.pcapng"))
    assert not m.active
    m.close()


def test_manager_sits_first_in_the_packet_chain(tmp_path: Path) -> None:
    m, chain = manager()

    class DropAll:
        def on_frame(self, frame: Any, direction: Any, now: float) -> bool:
            return False

    chain.stages.append(DropAll())
    m.start(str(tmp_path / "a.pcapng"))
    assert chain.stages[0] is m
    assert not chain.run(ARP_REQ, "in", 100.0)  # dropped after the capture recorded it
    m.close()
    assert len(read_pcapng(tmp_path / "a.pcapng").packets) == 1
    assert len(chain.stages) == 1


def test_manager_timers_cover_its_pcapng_captures(tmp_path: Path) -> None:
    m, chain = manager()
    m.start(str(tmp_path / "b.pcap"), format="pcap")
    assert m.poll_at() is None
    m.start(str(tmp_path / "a.pcapng"))
    chain.run(ARP_REQ, "in", 100.0)
    assert m.poll_at() == 101.0
    m.handle_timer(101.0)
    assert m.poll_at() is None
    assert len(read_pcapng(tmp_path / "a.pcapng").packets) == 1  # flushed by the timer
    m.close()


def test_a_broken_capture_is_stopped_and_counted_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, chain = manager()
    m.start(str(tmp_path / "a.pcapng"))
    [stage] = m.captures.values()

    def boom(*a: Any) -> bool:
        raise RuntimeError("bug")

    monkeypatch.setattr(stage, "on_frame", boom)
    assert chain.run(ARP_REQ, "in", 1.0)
    assert m.counters["capture.errors"] == 1 and m.captures == {} and chain.stages == []


def test_capture_ops_drive_the_manager(tmp_path: Path) -> None:
    m, _ = manager()
    view = SimpleNamespace(
        counters=collections.Counter(), tls=None, endpoint_is_secure=True, capture=m
    )
    table = build_ops(view)
    path = str(tmp_path / "live.pcapng")
    got = table.call("capture.start", {"path": path, "files": 2, "resolution": "ns"}, CTX)
    assert (got["files"], got["active"]) == (2, True)
    assert [c["path"] for c in table.call("capture.status", {}, CTX)["captures"]] == [path]
    with pytest.raises(OpError) as exc:
        table.call("capture.start", {"path": path}, CTX)
    assert (exc.value.code, exc.value.field) == ("invalid", "capture.path")
    assert table.call("capture.stop", {}, CTX)["stopped"][0]["path"] == path
    assert read_pcapng(Path(path)).interfaces == [(1, 9)]


def test_capture_config_keys() -> None:
    base = {"vips": [{"address": "192.0.2.10"}]}
    c = load_config_data(base).capture
    assert (c.pcapng, c.files, c.secrets, c.comments, c.resolution) == (None, 1, True, True, "us")
    c = load_config_data(
        {**base, "capture": {"pcapng": "x.pcapng", "files": 5, "comments": False}}
    ).capture
    assert (c.pcapng, c.files, c.comments) == ("x.pcapng", 5, False)
    for table, path in [
        ({"files": 0}, "capture.files"),
        ({"secrets": "yes"}, "capture.secrets"),
        ({"resolution": "ps"}, "capture.resolution"),
        ({"pcap": "a", "pcapng": "a"}, "capture.pcapng"),
        ({"ring": 3}, "capture.ring"),
    ]:
        with pytest.raises(ConfigError) as exc:
            load_config_data({**base, "capture": table})
        assert exc.value.path == path


def test_runtime_wires_capture_to_frames_events_and_key_log(tmp_path: Path) -> None:
    path = tmp_path / "rt.pcapng"
    lab = ROOT / "configs" / "lab.toml"
    data = tomllib.loads(lab.read_text())
    del data["control"]  # no sockets bound in a unit test
    data["interface"]["kind"] = "memory"
    data["capture"] = {"pcapng": str(path), "resolution": "ns"}
    config = load_config_data(data, lab)
    rt = Runtime(config).build()
    try:
        assert isinstance(rt.bus, TeeBus) and rt.capture in rt.bus.listeners
        assert rt.packet_chain.stages == [rt.capture]
        assert rt._shared["keylog"] is rt.capture
        # every TLS plugin of the virtual servers hands its key log lines to the capture
        tls = [p for c in rt.listeners.values() for p in c.plugins if isinstance(p, TlsPlugin)]
        assert tls and all(p.keylog() is rt.capture for p in tls)
        rt.host.receive_frame(ARP_REQ, rt.clocks.monotonic())
        rt.capture.write_line(LINE)
        rt.host.frames_to_send(rt.clocks.monotonic())
        rt.bus.emit("tls.handshake", {"vip": "192.0.2.10:443", "client": "192.0.2.1:1"})
        assert rt.counters["capture.verdicts_unmatched"] == 1
        # the runtime's timers flush the capture when the NF goes idle
        deadline = rt.capture.poll_at()
        soonest = rt.poll_at()
        assert deadline is not None and soonest is not None and soonest <= deadline
        rt.handle_timers(deadline)
        assert rt.capture.poll_at() is None
        assert len(read_pcapng(path).packets) == 2
        rt.capture.stop()
        assert all(p.keylog() is None for p in tls)  # nobody wants the lines: none formatted
    finally:
        rt.close()
    cap = read_pcapng(path)
    assert [p.direction for p in cap.packets] == ["in", "out"]  # request and our ARP reply
    assert cap.secrets and cap.interfaces == [(1, 9)]


def test_runtime_names_the_config_key_of_an_unwritable_capture(tmp_path: Path) -> None:
    data = {
        "vips": [{"address": "192.0.2.10"}],
        "interface": {"kind": "memory"},
        "capture": {"pcapng": str(tmp_path / "missing" / "x.pcapng")},
    }
    with pytest.raises(ConfigError) as exc:
        Runtime(load_config_data(data)).build()
    assert exc.value.path == "capture.pcapng" and "cannot open" in exc.value.message


def test_manager_wants_handshake_events_only_while_a_pcapng_capture_runs(tmp_path: Path) -> None:
    m, _ = manager()
    assert not m.wants("tls.handshake")
    m.start(str(tmp_path / "a.pcap"), format="pcap")
    assert not m.wants("tls.handshake")  # pcap has no comments to put verdicts in
    m.start(str(tmp_path / "b.pcapng"))
    assert m.wants("tls.handshake") and not m.wants("tcp.flow")
    m.stop(str(tmp_path / "b.pcapng"))
    assert not m.wants("tls.handshake")
    m.stop()
