"""Wire codecs: struct/memoryview based, one frozen ``XxxRepr`` per header with ``parse``/``emit``.

Errors are :class:`pipeline.errors.DecodeError` (``WireError`` carries the drop reason; the
reasons live in ``pipeline.wire.drops.DROP_REASONS``). Addresses are packed ``bytes``.
"""

from pipeline.wire.arp import ArpRepr
from pipeline.wire.drops import DROP_REASONS, WireError, reason_of
from pipeline.wire.ethernet import EthernetRepr, mac_str
from pipeline.wire.gso import ChecksumOk, GsoBytes
from pipeline.wire.icmp import IcmpEchoRepr
from pipeline.wire.icmpv6 import Icmpv6EchoRepr, NdiscRepr
from pipeline.wire.ipv4 import Ipv4Repr, ipv4_str
from pipeline.wire.ipv6 import Ipv6Repr, ipv6_str
from pipeline.wire.udp import UdpRepr

__all__ = [
    "DROP_REASONS",
    "ArpRepr",
    "ChecksumOk",
    "EthernetRepr",
    "GsoBytes",
    "IcmpEchoRepr",
    "Icmpv6EchoRepr",
    "Ipv4Repr",
    "Ipv6Repr",
    "NdiscRepr",
    "UdpRepr",
    "WireError",
    "ipv4_str",
    "ipv6_str",
    "mac_str",
    "reason_of",
]
