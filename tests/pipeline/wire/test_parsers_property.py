"""Every parser, fed arbitrary bytes, returns a result or raises DecodeError — nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import DecodeError
from pipeline.wire.arp import ArpRepr
from pipeline.wire.drops import DROP_REASONS, reason_of
from pipeline.wire.ethernet import EthernetRepr
from pipeline.wire.icmp import IcmpEchoRepr, echo_reply_v4
from pipeline.wire.icmpv6 import Icmpv6EchoRepr, NdiscRepr, echo_reply_v6
from pipeline.wire.ipv4 import Ipv4Repr, check_header
from pipeline.wire.ipv6 import Ipv6Repr
from pipeline.wire.udp import UdpRepr

S4, D4 = bytes(range(4)), bytes(range(4, 8))
S6, D6 = bytes(range(16)), bytes(range(16, 32))
MAC = bytes(6)

PARSERS: dict[str, Callable[[bytes], Any]] = {
    "ethernet": EthernetRepr.parse,
    "arp": ArpRepr.parse,
    "ipv4": Ipv4Repr.parse,
    "ipv6": Ipv6Repr.parse,
    "icmp": IcmpEchoRepr.parse,
    "icmpv6_echo": lambda b: Icmpv6EchoRepr.parse(b, S6, D6),
    "icmpv6_reply": lambda b: echo_reply_v6(memoryview(b), S6, D6),
    "ndisc": lambda b: NdiscRepr.parse(b, S6, D6),
    "udp4": lambda b: UdpRepr.parse(b, S4, D4),
    "udp6": lambda b: UdpRepr.parse(b, S6, D6),
}

# Prefixes that get random bytes past the first checks of each parser.
PREFIXES = {
    "ethernet": [b"", bytes(12) + b"\x81\x00"],
    "arp": [b"", b"\x00\x01\x08\x00\x06\x04\x00\x01"],
    "ipv4": [b"", b"\x45", b"\x46\x00\x00\x20"],
    "ipv6": [b"", b"\x60\x00\x00\x00\x00\x20\x00\x40" + bytes(32), b"\x60" + bytes(7)],
    "icmp": [b"", b"\x08\x00"],
    "icmpv6_echo": [b"", b"\x80\x00"],
    "icmpv6_reply": [b"", b"\x80\x00"],
    "ndisc": [b"", b"\x87\x00", b"\x88\x00"],
    "udp4": [b""],
    "udp6": [b""],
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_parse_random_bytes(name: str, data: st.DataObject) -> None:
    prefix = data.draw(st.sampled_from(PREFIXES[name]))
    raw = prefix + data.draw(st.binary(max_size=120))
    try:
        PARSERS[name](raw)
    except DecodeError as exc:
        assert reason_of(exc) in DROP_REASONS


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"", b"\x08\x00"]), st.binary(max_size=80))
def test_echo_reply_v4_random_icmp(prefix: bytes, rest: bytes) -> None:
    message = prefix + rest
    frame = MAC + MAC + b"\x08\x00" + Ipv4Repr(S4, D4, 1, len(message)).emit(message)
    hlen, total, *_ = check_header(memoryview(frame), 14)
    try:
        reply = echo_reply_v4(frame, 14, hlen, total, MAC)
    except DecodeError as exc:
        assert reason_of(exc) in DROP_REASONS
    else:
        assert len(reply) == len(frame)
