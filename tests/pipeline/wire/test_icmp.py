"""ICMPv4/ICMPv6 echo, Neighbor Discovery and UDP codecs; scapy recomputes every checksum."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether

from pipeline.errors import DecodeError
from pipeline.wire import icmp, icmpv6
from pipeline.wire.checksum import checksum, pseudo_header_sum
from pipeline.wire.drops import reason_of
from pipeline.wire.icmp import IcmpEchoRepr, echo_reply_v4, patch_checksum
from pipeline.wire.icmpv6 import Icmpv6EchoRepr, NdiscRepr, echo_reply_frame_v6, echo_reply_v6
from pipeline.wire.ipv4 import check_header
from pipeline.wire.ipv6 import ipv6_str
from pipeline.wire.udp import UdpRepr

S4, D4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 10])
S6 = bytes.fromhex("20010db8000000000000000000000001")
D6 = bytes.fromhex("20010db8000000000000000000000010")
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
S6s, D6s = ipv6_str(S6), ipv6_str(D6)


def reason(exc: pytest.ExceptionInfo[DecodeError]) -> str:
    return reason_of(exc.value)


def scapy_checksum(layer_bytes: bytes, cls: type, field: str = "chksum") -> int:
    pkt = cls(layer_bytes)
    setattr(pkt, field, None)
    return int(getattr(cls(raw(pkt)), field))


# ---- ICMPv4 ----------------------------------------------------------------------------------
def test_icmp_echo_round_trip_and_scapy_checksum() -> None:
    msg = IcmpEchoRepr(icmp.ECHO_REQUEST, 0x1234, 7).emit(b"ping data")
    assert msg == raw(ICMP(type=8, id=0x1234, seq=7) / b"ping data")
    parsed, data = IcmpEchoRepr.parse(msg)
    assert parsed == IcmpEchoRepr(icmp.ECHO_REQUEST, 0x1234, 7)
    assert bytes(data) == b"ping data"


def test_icmp_errors() -> None:
    good = bytearray(IcmpEchoRepr(icmp.ECHO_REQUEST, 1, 1).emit(b"abcd"))
    bad = bytearray(good)
    bad[-1] ^= 1
    unreachable = raw(ICMP(type=3, code=1) / (b"x" * 8))
    for data, want in [
        (bytes(good[:7]), "truncated"),
        (bytes(bad), "bad_checksum"),
        (unreachable, "unsupported"),
        (bytes(good) + b"\x01", "bad_checksum"),  # trailing garbage is inside the checksum
    ]:
        with pytest.raises(DecodeError) as exc:
            IcmpEchoRepr.parse(data)
        assert reason(exc) == want


def request_frame(icmp_layer: ICMP, **ip: Any) -> bytes:
    return raw(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="192.0.2.1", dst="192.0.2.10", **ip)
        / icmp_layer
    )


def reply_to(frame: bytes) -> bytes:
    hlen, total, *_ = check_header(memoryview(frame), 14)
    return echo_reply_v4(frame, 14, hlen, total, MAC_B)


@given(
    st.binary(max_size=200),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(1, 255),
    st.sampled_from([0, 0x10, 0xB8]),
    st.booleans(),
)
def test_echo_reply_v4_is_correct_for_any_request(
    data: bytes, ident: int, seq: int, ttl: int, tos: int, df: bool
) -> None:
    request = request_frame(
        ICMP(type=8, id=ident, seq=seq) / data, ttl=ttl, tos=tos, flags="DF" if df else 0, id=ident
    )
    frame = reply_to(request + b"\x00" * 4)  # Ethernet padding is not echoed
    assert frame[:14] == MAC_A + MAC_B + b"\x08\x00"
    pkt = Ether(frame)
    ip = pkt[IP]
    assert (ip.src, ip.dst, ip.ttl, ip.len, ip.ihl, ip.tos) == (
        "192.0.2.10",
        "192.0.2.1",
        64,
        28 + len(data),
        5,
        tos,
    )
    assert checksum(frame[14:34]) == 0 and checksum(frame[34:]) == 0
    assert (ip[ICMP].type, ip[ICMP].code, ip[ICMP].id, ip[ICMP].seq) == (0, 0, ident, seq)
    assert frame[38:] == request[38:]


def test_echo_reply_v4_drops_ip_options() -> None:
    request = request_frame(ICMP(type=8, id=1, seq=2) / b"opts", options=[IPOption_RR()])
    frame = reply_to(request)
    ip = Ether(frame)[IP]
    assert ip.ihl == 5 and ip.len == 20 + 12 and bytes(ip[ICMP].payload) == b"opts"
    assert checksum(frame[14:34]) == 0 and checksum(frame[34:]) == 0


def test_echo_reply_v4_refuses_non_requests() -> None:
    bad_len = bytearray(request_frame(ICMP(type=8)))
    for frame, want in [
        (request_frame(ICMP(type=0)), "unsupported"),
        (request_frame(ICMP(type=8, chksum=1)), "bad_checksum"),
    ]:
        with pytest.raises(DecodeError) as exc:
            reply_to(frame)
        assert reason(exc) == want
    with pytest.raises(DecodeError) as exc:
        echo_reply_v4(bytes(bad_len), 14, 20, 27, MAC_B)
    assert reason(exc) == "truncated"


@given(st.binary(min_size=4, max_size=64).filter(lambda b: len(b) % 2 == 0), st.integers(0, 0xFFFF))
def test_patch_checksum_gives_a_valid_message(data: bytes, new_word: int) -> None:
    msg = bytearray(data)
    msg[2:4] = b"\x00\x00"
    msg[2:4] = checksum(msg).to_bytes(2, "big")
    old_word = (msg[0] << 8) | msg[1]
    msg[0:2] = new_word.to_bytes(2, "big")
    msg[2:4] = patch_checksum(int.from_bytes(msg[2:4], "big"), old_word, new_word).to_bytes(
        2, "big"
    )
    assert checksum(msg) == 0  # strict: the one's-complement sum is all ones


# ---- ICMPv6 ----------------------------------------------------------------------------------
def test_icmpv6_echo_round_trip_with_scapy() -> None:
    msg = Icmpv6EchoRepr(icmpv6.ECHO_REQUEST, 5, 6).emit(S6, D6, b"abc")
    want = raw(IPv6(src=S6s, dst=D6s) / ICMPv6EchoRequest(id=5, seq=6, data=b"abc"))[40:]
    assert msg == want
    parsed, data = Icmpv6EchoRepr.parse(msg, S6, D6)
    assert parsed.ident == 5 and parsed.seq == 6 and bytes(data) == b"abc"
    with pytest.raises(DecodeError) as exc:
        Icmpv6EchoRepr.parse(msg, S6, S6)  # wrong pseudo-header
    assert reason(exc) == "bad_checksum"


@given(st.binary(max_size=200))
def test_echo_reply_v6_checksum(data: bytes) -> None:
    request = raw(IPv6(src=S6s, dst=D6s) / ICMPv6EchoRequest(id=1, seq=2, data=data))[40:]
    reply = echo_reply_v6(memoryview(request), S6, D6)
    pkt = IPv6(raw(IPv6(src=D6s, dst=S6s, nh=58, plen=len(reply))) + reply)
    assert isinstance(pkt.payload, ICMPv6EchoReply)
    assert pkt.payload.data == data
    assert checksum(reply, pseudo_header_sum(D6, S6, 58, len(reply))) == 0
    parsed, _ = Icmpv6EchoRepr.parse(reply, D6, S6)  # verifies the checksum
    assert parsed.type == icmpv6.ECHO_REPLY


def test_ns_from_scapy_parses() -> None:
    pkt = (
        IPv6(src=S6s, dst="ff02::1:ff00:10", hlim=255)
        / ICMPv6ND_NS(tgt=D6s)
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
    )
    data = raw(pkt)
    ns, rest = NdiscRepr.parse(data[40:], S6, bytes.fromhex("ff0200000000000000000001ff000010"))
    assert ns == NdiscRepr(icmpv6.NEIGHBOR_SOLICIT, D6, MAC_A)
    assert bytes(rest) == b""


def test_na_with_flags_emitted_parses_in_scapy() -> None:
    na = NdiscRepr(icmpv6.NEIGHBOR_ADVERT, D6, MAC_B, solicited=True, override=True)
    msg = na.emit(D6, S6)
    pkt = IPv6(raw(IPv6(src=D6s, dst=S6s, nh=58, hlim=255, plen=len(msg))) + msg)
    adv = pkt[ICMPv6ND_NA]
    assert (adv.R, adv.S, adv.O, adv.tgt) == (0, 1, 1, D6s)
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:00:02"
    rebuilt = IPv6(raw(pkt))
    rebuilt[ICMPv6ND_NA].cksum = None
    assert IPv6(raw(rebuilt))[ICMPv6ND_NA].cksum == adv.cksum
    assert NdiscRepr.parse(msg, D6, S6)[0] == na


def test_nd_options_skipped_and_checked() -> None:
    base = IPv6(src=S6s, dst=D6s, hlim=255) / ICMPv6ND_NA(tgt=D6s, R=0, S=1, O=0)
    with_mtu = raw(base / ICMPv6NDOptMTU() / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:02"))
    na, _ = NdiscRepr.parse(with_mtu[40:], S6, D6)
    assert na.lladdr == MAC_B and na.solicited and not na.override and not na.router
    zero_len = bytearray(raw(base / ICMPv6NDOptMTU()))
    zero_len[40 + 24 + 1] = 0
    too_long = bytearray(raw(base / ICMPv6NDOptMTU()))
    too_long[40 + 24 + 1] = 5
    for data, want in [(zero_len, "malformed"), (too_long, "truncated")]:
        msg = bytearray(data[40:])
        msg[2:4] = b"\x00\x00"
        msg[2:4] = checksum(msg, pseudo_header_sum(S6, D6, 58, len(msg))).to_bytes(2, "big")
        with pytest.raises(DecodeError) as exc:
            NdiscRepr.parse(bytes(msg), S6, D6)
        assert reason(exc) == want


def test_nd_errors() -> None:
    ns = NdiscRepr(icmpv6.NEIGHBOR_SOLICIT, D6, MAC_A).emit(S6, D6)
    bad = bytearray(ns)
    bad[10] ^= 1
    mcast_target = NdiscRepr(icmpv6.NEIGHBOR_SOLICIT, b"\xff" + D6[1:]).emit(S6, D6)
    for data, want in [
        (ns[:23], "truncated"),
        (bytes(bad), "bad_checksum"),
        (mcast_target, "malformed"),
        (Icmpv6EchoRepr(icmpv6.ECHO_REQUEST, 1, 1).emit(S6, D6, bytes(20)), "unsupported"),
    ]:
        with pytest.raises(DecodeError) as exc:
            NdiscRepr.parse(data, S6, D6)
        assert reason(exc) == want


# ---- UDP -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("src", "dst"), [(S4, D4), (S6, D6)])
def test_udp_round_trip_with_scapy(src: bytes, dst: bytes) -> None:
    msg = UdpRepr(5353, 53).emit(src, dst, b"query")
    ip = IP(src="192.0.2.1", dst="192.0.2.10") if len(src) == 4 else IPv6(src=S6s, dst=D6s)
    hdr_len = 20 if len(src) == 4 else 40
    assert msg == raw(ip / UDP(sport=5353, dport=53) / b"query")[hdr_len:]
    parsed, payload = UdpRepr.parse(msg + b"trailer", src, dst)
    assert parsed == UdpRepr(5353, 53) and bytes(payload) == b"query"


def test_udp_errors() -> None:
    msg = bytearray(UdpRepr(1, 2).emit(S4, D4, b"abc"))
    bad = bytearray(msg)
    bad[-1] ^= 1
    no_csum = bytearray(msg)
    no_csum[6:8] = b"\x00\x00"
    short_len = bytearray(msg)
    short_len[4:6] = b"\x00\x04"
    long_len = bytearray(msg)
    long_len[4:6] = b"\x00\x20"
    assert UdpRepr.parse(bytes(no_csum), S4, D4)[0] == UdpRepr(1, 2)  # IPv4: zero = none
    for data, src, dst, want in [
        (msg[:7], S4, D4, "truncated"),
        (bad, S4, D4, "bad_checksum"),
        (short_len, S4, D4, "bad_length"),
        (long_len, S4, D4, "truncated"),
        (no_csum, S6, D6, "bad_checksum"),  # IPv6: checksum is mandatory
    ]:
        with pytest.raises(DecodeError) as exc:
            UdpRepr.parse(bytes(data), src, dst)
        assert reason(exc) == want


@given(
    st.binary(max_size=200), st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 0xFFFFF)
)
def test_echo_reply_frame_v6_is_correct_for_any_request(
    data: bytes, ident: int, tc: int, fl: int
) -> None:
    request = raw(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IPv6(src=S6s, dst=D6s, tc=tc, fl=fl, hlim=3)
        / ICMPv6EchoRequest(id=ident, seq=1, data=data)
    )
    frame = echo_reply_frame_v6(request + bytes(3), 14, len(request) - 54, MAC_B)
    assert frame[:14] == MAC_A + MAC_B + b"\x86\xdd"
    pkt = Ether(frame)
    ip = pkt[IPv6]
    assert (ip.src, ip.dst, ip.hlim, ip.tc, ip.fl, ip.plen) == (D6s, S6s, 64, tc, fl, 8 + len(data))
    reply = pkt[ICMPv6EchoReply]
    assert (reply.id, reply.seq, reply.data) == (ident, 1, data)
    msg = frame[54:]
    assert checksum(msg, pseudo_header_sum(D6, S6, 58, len(msg))) == 0


def test_echo_reply_frame_v6_refuses_bad_requests() -> None:
    def frame_of(layer: Any) -> bytes:
        return raw(Ether() / IPv6(src=S6s, dst=D6s) / layer)

    for frame, want in [
        (frame_of(ICMPv6EchoReply()), "unsupported"),
        (frame_of(ICMPv6EchoRequest(cksum=0x1111)), "bad_checksum"),
        (frame_of(ICMPv6EchoRequest())[:60], "truncated"),
    ]:
        with pytest.raises(DecodeError) as exc:
            echo_reply_frame_v6(frame, 14, len(frame) - 54, MAC_B)
        assert reason(exc) == want
