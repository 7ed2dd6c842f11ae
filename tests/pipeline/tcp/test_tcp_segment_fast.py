"""``tx_segment`` builds the very ``TcpRepr`` the constructor would; a Linux SYN decodes into an
``RxSyn`` with the codec's fields."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.tcp.segment import RxSyn, parse, tx_segment
from pipeline.wire.tcp import ACK, PSH, SYN, TcpRepr

CLIENT = bytes([192, 0, 2, 1])
VIP = bytes([192, 0, 2, 10])


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"timestamp": (1, 0xFFFFFFFF)},
        {"timestamp": (5, 6), "sack_blocks": ((10, 20), (30, 40))},
        {"mss": 1460, "wscale": 7, "sack_permitted": True, "timestamp": (9, 8)},
        {"mss": 536},
    ],
)
def test_tx_segment_is_the_constructors_object(kw: dict[str, object]) -> None:
    want = TcpRepr(443, 49500, 0xFFFFFFFF, 7, ACK | PSH, 502, b"x" * 51, **kw)  # type: ignore[arg-type]
    got = tx_segment(
        443,
        49500,
        0xFFFFFFFF,
        7,
        ACK | PSH,
        502,
        b"x" * 51,
        kw.get("timestamp"),  # type: ignore[arg-type]
        kw.get("sack_blocks", ()),  # type: ignore[arg-type]
        kw.get("mss"),  # type: ignore[arg-type]
        kw.get("wscale"),  # type: ignore[arg-type]
        bool(kw.get("sack_permitted", False)),
    )
    assert type(got) is TcpRepr
    for f in dataclasses.fields(TcpRepr):  # every field set, to the constructor's value
        assert getattr(got, f.name) == getattr(want, f.name), f.name
    assert got == want and hash(got) == hash(want)
    assert got.emit(VIP, CLIENT) == want.emit(VIP, CLIENT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.seq = 1  # type: ignore[misc]


def test_linux_syn_is_an_rx_syn_with_the_codecs_fields() -> None:
    opts = bytes.fromhex("020405b40402080a1234567800000000010303" + "0e")
    raw = TcpRepr(40000, 443, 77, 0, SYN, 64240, extra_options=opts).emit(CLIENT, VIP)
    seg, ref = parse(memoryview(raw)), TcpRepr.parse(raw)
    assert isinstance(seg, RxSyn)
    for name in ("src_port", "dst_port", "seq", "ack", "flags", "window", "mss", "wscale"):
        assert getattr(seg, name) == getattr(ref, name), name
    assert (seg.sack_permitted, seg.timestamp, seg.sack_blocks) == (True, (0x12345678, 0), ())
    assert seg.wscale == 14 and seg.seg_len == 1 and bytes(seg.payload) == b""
