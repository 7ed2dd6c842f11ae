"""Ethernet II / 802.1Q and ARP codecs: round trips, truncation, padding, scapy as the oracle."""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.layers.l2 import ARP, Dot1Q, Ether

from pipeline.errors import DecodeError
from pipeline.wire.arp import OP_REPLY, OP_REQUEST, ArpRepr
from pipeline.wire.drops import reason_of
from pipeline.wire.ethernet import (
    ETH_ARP,
    ETH_IPV4,
    EthernetRepr,
    ipv6_multicast_mac,
    mac_str,
)

A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")


def test_ethernet_round_trip_untagged() -> None:
    frame = A + B + b"\x08\x00" + b"payload"
    eth, payload = EthernetRepr.parse(frame)
    assert eth == EthernetRepr(A, B, ETH_IPV4)
    assert bytes(payload) == b"payload"
    assert eth.emit(payload) == frame
    assert eth.header_len == 14


def test_ethernet_vlan_tag_matches_scapy() -> None:
    frame = raw(Ether(dst=mac_str(A), src=mac_str(B)) / Dot1Q(vlan=42, prio=5) / ARP())
    eth, payload = EthernetRepr.parse(frame)
    assert eth.vlan == (5 << 13) | 42
    assert eth.ethertype == ETH_ARP
    assert eth.header_len == 18
    assert eth.emit(payload) == frame


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "truncated"),
        (A + B + b"\x08", "truncated"),
        (A + B + b"\x81\x00\x00", "truncated"),
        (A + B + b"\x81\x00\x00\x01\x81\x00", "unsupported"),
        (A + B + b"\x00\x40" + bytes(64), "unsupported"),  # 802.3 length field
    ],
)
def test_ethernet_errors(frame: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        EthernetRepr.parse(frame)
    assert reason_of(exc.value) == reason


def test_ipv6_multicast_mac() -> None:
    assert ipv6_multicast_mac(bytes.fromhex("ff0200000000000000000001ff123456")) == bytes.fromhex(
        "3333ff123456"
    )


def test_arp_request_from_scapy_parses_and_round_trips() -> None:
    pkt = ARP(op=1, hwsrc=mac_str(A), psrc="192.0.2.1", pdst="192.0.2.10")
    msg, rest = ArpRepr.parse(raw(pkt))
    assert msg == ArpRepr(OP_REQUEST, A, bytes([192, 0, 2, 1]), bytes(6), bytes([192, 0, 2, 10]))
    assert bytes(rest) == b""
    assert msg.emit() == raw(pkt)
    assert not msg.is_gratuitous


def test_arp_emitted_reply_parses_in_scapy() -> None:
    msg = ArpRepr(OP_REPLY, A, bytes([10, 0, 0, 2]), B, bytes([10, 0, 0, 1]))
    pkt = ARP(msg.emit())
    assert (pkt.op, pkt.hwsrc, pkt.psrc, pkt.hwdst, pkt.pdst) == (
        2,
        mac_str(A),
        "10.0.0.2",
        mac_str(B),
        "10.0.0.1",
    )


def test_arp_trailing_padding_is_returned_not_parsed() -> None:
    msg = ArpRepr(OP_REQUEST, A, bytes(4), bytes(6), bytes([10, 0, 0, 1]))
    parsed, rest = ArpRepr.parse(msg.emit() + bytes(18))
    assert parsed == msg
    assert bytes(rest) == bytes(18)


@pytest.mark.parametrize("cut", [0, 1, 8, 27])
def test_arp_truncated(cut: int) -> None:
    data = ArpRepr(OP_REQUEST, A, bytes(4), bytes(6), bytes(4)).emit()[:cut]
    with pytest.raises(DecodeError) as exc:
        ArpRepr.parse(data)
    assert reason_of(exc.value) == "truncated"


@pytest.mark.parametrize(
    "patch",
    [
        (0, b"\x00\x06"),  # htype IEEE 802
        (2, b"\x86\xdd"),  # ptype IPv6
        (4, b"\x08"),  # hlen
        (6, b"\x00\x03"),  # RARP op
    ],
)
def test_arp_other_types_unsupported(patch: tuple[int, bytes]) -> None:
    data = bytearray(ArpRepr(OP_REQUEST, A, bytes(4), bytes(6), bytes(4)).emit())
    off, value = patch
    data[off : off + len(value)] = value
    with pytest.raises(DecodeError) as exc:
        ArpRepr.parse(bytes(data))
    assert reason_of(exc.value) == "unsupported"
