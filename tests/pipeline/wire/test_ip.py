"""IPv4 and IPv6 header codecs: round trips, checks, fragments, extension headers; scapy as oracle."""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)

from pipeline.errors import ApiError, DecodeError
from pipeline.wire.drops import reason_of
from pipeline.wire.ipv4 import PROTO_TCP, PROTO_UDP, Ipv4Repr, build_header, ipv4_str
from pipeline.wire.ipv6 import NH_TCP, NH_UDP, Ipv6Repr, ipv6_str, solicited_node
from pipeline.wire.ipv6 import build_header as build_header6

S4, D4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 10])
S6 = bytes.fromhex("20010db8000000000000000000000001")
D6 = bytes.fromhex("20010db8000000000000000000abcdef")


def reason(exc: pytest.ExceptionInfo[DecodeError]) -> str:
    return reason_of(exc.value)


# ---- IPv4 ------------------------------------------------------------------------------------
def test_ipv4_round_trip_matches_scapy() -> None:
    hdr = Ipv4Repr(S4, D4, PROTO_UDP, 5, ttl=17, ident=0x1234, tos=0x10)
    packet = hdr.emit(b"hello")
    pkt = IP(packet)
    assert (pkt.src, pkt.dst, pkt.ttl, pkt.id, pkt.proto, pkt.len) == (
        "192.0.2.1",
        "192.0.2.10",
        17,
        0x1234,
        17,
        25,
    )
    assert pkt.flags == "DF"
    rebuilt = IP(raw(pkt))
    del rebuilt.chksum
    assert raw(rebuilt) == packet
    parsed, payload = Ipv4Repr.parse(packet)
    assert parsed == hdr
    assert bytes(payload) == b"hello"


def test_ipv4_from_scapy_with_options_skips_them_and_trims_padding() -> None:
    packet = raw(IP(src="192.0.2.1", dst="192.0.2.10", options=[IPOption_RR()]) / TCP())
    hdr, payload = Ipv4Repr.parse(packet + bytes(10))  # Ethernet padding after the datagram
    assert hdr.header_len > 20
    assert hdr.protocol == PROTO_TCP
    assert bytes(payload) == packet[hdr.header_len :]
    assert ipv4_str(hdr.src) == "192.0.2.1"


@pytest.mark.parametrize(
    ("pkt", "why"),
    [
        (IP(flags="MF"), "fragment"),
        (IP(frag=10), "fragment"),
        (IP(flags="MF", frag=3), "fragment"),
    ],
)
def test_ipv4_fragments(pkt: IP, why: str) -> None:
    with pytest.raises(DecodeError) as exc:
        Ipv4Repr.parse(raw(pkt / (b"x" * 8)))
    assert reason(exc) == why


def test_ipv4_checks() -> None:
    good = bytearray(Ipv4Repr(S4, D4, PROTO_UDP, 4).emit(b"abcd"))
    bad_csum = bytearray(good)
    bad_csum[10] ^= 0xFF
    cases = {
        "truncated": [bytes(good[:19]), bytes(good[:23])],  # header cut; total length > data
        "bad_checksum": [bytes(bad_csum)],
        "bad_version": [b"\x65" + bytes(good[1:])],
        "bad_length": [b"\x44" + bytes(good[1:]), bytes(good[:2]) + b"\x00\x10" + bytes(good[4:])],
    }
    for want, packets in cases.items():
        for packet in packets:
            with pytest.raises(DecodeError) as exc:
                Ipv4Repr.parse(packet)
            assert reason(exc) == want, packet.hex()


def test_ipv4_header_length_past_data_is_truncated() -> None:
    packet = bytearray(Ipv4Repr(S4, D4, PROTO_UDP, 0).emit())
    packet[0] = 0x4F  # 60-byte header in 20 bytes
    with pytest.raises(DecodeError) as exc:
        Ipv4Repr.parse(bytes(packet))
    assert reason(exc) == "truncated"


def test_ipv4_emit_refuses_a_payload_of_the_wrong_length() -> None:
    with pytest.raises(ApiError):
        Ipv4Repr(S4, D4, PROTO_UDP, 3).emit(b"abcd")


# ---- IPv6 ------------------------------------------------------------------------------------
def test_ipv6_round_trip_matches_scapy() -> None:
    hdr = Ipv6Repr(S6, D6, NH_UDP, 3, hop_limit=9, traffic_class=0xB8, flow_label=0x12345)
    packet = hdr.emit(b"xyz")
    pkt = IPv6(packet)
    assert (pkt.src, pkt.dst, pkt.nh, pkt.hlim, pkt.tc, pkt.fl, pkt.plen) == (
        ipv6_str(S6),
        ipv6_str(D6),
        17,
        9,
        0xB8,
        0x12345,
        3,
    )
    parsed, payload = Ipv6Repr.parse(packet + b"pad")
    assert parsed == hdr
    assert bytes(payload) == b"xyz"


def test_ipv6_walks_skippable_extension_headers() -> None:
    chain = (
        IPv6(src=ipv6_str(S6), dst=ipv6_str(D6))
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / TCP(sport=1, dport=2)
    )
    packet = raw(chain)
    hdr, payload = Ipv6Repr.parse(packet)
    assert hdr.next_header == NH_TCP
    assert bytes(payload) == packet[-20:]
    assert hdr.payload_len == 20


def test_ipv6_fragment_header_is_reported() -> None:
    packet = raw(IPv6() / IPv6ExtHdrFragment() / UDP())
    with pytest.raises(DecodeError) as exc:
        Ipv6Repr.parse(packet)
    assert reason(exc) == "fragment"


@pytest.mark.parametrize("nh", [50, 51, 59, 135, 4])  # ESP, AH, no next header, mobility, IPIP
def test_ipv6_unknown_next_header_is_unsupported(nh: int) -> None:
    packet = Ipv6Repr(S6, D6, nh, 8).emit(bytes(8))
    with pytest.raises(DecodeError) as exc:
        Ipv6Repr.parse(packet)
    assert reason(exc) == "unsupported"


def test_ipv6_hop_by_hop_not_first_is_malformed() -> None:
    packet = raw(IPv6() / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / UDP())
    with pytest.raises(DecodeError) as exc:
        Ipv6Repr.parse(packet)
    assert reason(exc) == "malformed"


def test_ipv6_checks() -> None:
    good = Ipv6Repr(S6, D6, NH_UDP, 4).emit(b"abcd")
    ext = bytearray(raw(IPv6(plen=8) / IPv6ExtHdrDestOpt()))
    ext[41] = 3  # extension header claims 32 bytes in an 8-byte payload
    for packet, want in [
        (good[:39], "truncated"),
        (good[:43], "truncated"),  # payload length beyond the data
        (b"\x40" + good[1:], "bad_version"),
        (bytes(ext), "truncated"),
    ]:
        with pytest.raises(DecodeError) as exc:
            Ipv6Repr.parse(packet)
        assert reason(exc) == want, packet.hex()


def test_ipv6_extension_chain_is_bounded() -> None:
    pkt = IPv6()
    for _ in range(12):
        pkt = pkt / IPv6ExtHdrDestOpt()
    with pytest.raises(DecodeError) as exc:
        Ipv6Repr.parse(raw(pkt / UDP()))
    assert reason(exc) == "unsupported"


def test_solicited_node_address() -> None:
    assert ipv6_str(solicited_node(D6)) == "ff02::1:ffab:cdef"


def test_build_header_is_emit_without_the_object() -> None:
    hdr = Ipv4Repr(S4, D4, PROTO_TCP, 10, ttl=33, ident=7, dont_fragment=False, tos=4)
    assert build_header(S4, D4, PROTO_TCP, 10, 7, 33, 4, False) == hdr.emit(bytes(10))[:20]
    with pytest.raises(ApiError):
        build_header(S4, D4, PROTO_TCP, 65516, 0)


@pytest.mark.parametrize("ident", [0, 1, 0x1234, 0xFFFF])
@pytest.mark.parametrize("length", [0, 1, 39, 1480, 65515])
def test_build_header_checksum_matches_scapys(ident: int, length: int) -> None:
    hdr = build_header(S4, D4, PROTO_TCP, length, ident)
    ours = IP(hdr)
    fresh = IP(raw(IP(src=ours.src, dst=ours.dst, proto=6, id=ident, flags="DF", len=20 + length)))
    assert ours.chksum == fresh.chksum and raw(ours)[:20] == raw(fresh)[:20]


def test_build_header6_is_emit_without_the_object_or_payload() -> None:
    assert build_header6(S6, D6, NH_TCP, 10) == Ipv6Repr(S6, D6, NH_TCP, 10).emit(bytes(10))[:40]
    assert build_header6(S6, D6, NH_UDP, 3, 9) == Ipv6Repr(S6, D6, NH_UDP, 3, 9).emit(b"abc")[:40]
