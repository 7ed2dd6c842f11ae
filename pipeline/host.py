"""The host stack: tapnf as a host on its Ethernet segment, owning the virtual IPs.

It answers ARP for IPv4 VIPs and Neighbor Solicitations for IPv6 VIPs, answers ICMP/ICMPv6 echo,
learns neighbours, hands TCP for a VIP to the transport handler and frames that handler's output
(resolving the next hop with ARP/NS, queueing a bounded number of packets meanwhile). Everything
else is dropped with a counted reason (``drop.<reason>``, reasons in ``pipeline.wire.drops``).
Sans-IO: frames and ``now`` in, frames out. Nothing here raises on any input. ``timers_dirty``
tells the loop when ``poll_at`` may have moved earlier (echo, ARP and ND answers leave it alone,
and so do TCP segments that only move deadlines later, which most do).
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

from pipeline.chain import PacketChain
from pipeline.errors import ConfigError, DecodeError
from pipeline.events import EventBus, NullBus
from pipeline.neighbours import NeighbourTable, PendingQueue
from pipeline.wire import arp, icmp, icmpv6, ipv4, ipv6
from pipeline.wire.arp import arp_frame
from pipeline.wire.checksum import sums_to_ones
from pipeline.wire.drops import WireError, reason_of
from pipeline.wire.ethernet import (
    BROADCAST,
    ETH_IPV4,
    ETH_IPV6,
    EthernetRepr,
    ipv6_multicast_mac,
)
from pipeline.wire.gso import gso
from pipeline.wire.icmpv6 import NdiscRepr
from pipeline.wire.ipv4 import Ipv4Repr
from pipeline.wire.ipv6 import Ipv6Repr
from pipeline.wire.udp import UdpRepr

_ETHERTYPE_IPV4 = b"\x08\x00"
_ETHERTYPE_IPV6 = b"\x86\xdd"
_IPV4 = struct.Struct("!BBHHHBBH4s4s")  # ipv4's header layout (version/IHL ... destination)
MAX_TX_QUEUE = 4096  # frames waiting for frames_to_send(); beyond: drop.tx_full


class TransportHandler(Protocol):
    """What the TCP stack offers the host stack (``pipeline.tcp`` implements it)."""

    # Read after ``take_output``: set when the next deadline may be earlier than ``poll_at``
    # last said (cleared by ``poll_at``). One that moved later or went away may be left stale:
    # it fires early (a call of ``handle_timer`` with nothing due), never late.
    timers_moved: bool

    def receive_tcp(self, src: bytes, dst: bytes, segment: memoryview, now: float) -> None: ...

    def take_output(self) -> list[tuple[bytes, bytes, bytes]]:
        """(src ip, dst ip, TCP segment incl. checksum) to send, oldest first."""
        ...

    def poll_at(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class HostStack:
    def __init__(
        self,
        mac: bytes,
        vips: Sequence[bytes],
        mtu: int = 1500,
        *,
        counters: collections.Counter[str],
        bus: EventBus | None = None,
        tcp: TransportHandler | None = None,
        neighbour_limit: int = 1024,
        packet_chain: PacketChain | None = None,
    ) -> None:
        if len(mac) != 6 or mac[0] & 1:
            raise ConfigError("interface.mac", "must be a 6-byte unicast MAC", mac.hex())
        if not 576 <= mtu <= 65535 - 14:
            raise ConfigError("interface.mtu", "must be between 576 and 65521", mtu)
        self.mac = bytes(mac)
        self.v4 = frozenset(bytes(v) for v in vips if len(v) == 4)
        self.v6 = frozenset(bytes(v) for v in vips if len(v) == 16)
        if len(self.v4) + len(self.v6) != len(set(map(bytes, vips))):
            raise ConfigError("vips", "addresses must be 4 or 16 packed bytes", list(vips))
        self.mtu = mtu
        self.counters = counters
        self.bus = bus if bus is not None else NullBus()
        self.tcp = tcp
        self.packet_chain = packet_chain
        self.neighbours = NeighbourTable(neighbour_limit, counters)
        self.pending = PendingQueue(counters)
        self._waiting = self.pending.waiting  # ``ip in`` per received frame, without a call
        self._neighbour_macs = self.neighbours.entries  # a known neighbour's refresh, inline
        self.listen_macs = frozenset(
            {self.mac, BROADCAST, ipv6_multicast_mac(ipv6.ALL_NODES)}
            | {ipv6_multicast_mac(ipv6.solicited_node(v)) for v in self.v6}
        )
        self._out: list[bytes] = []
        # Set when something here may have moved a deadline earlier (TCP says so through its
        # ``timers_moved`` when ``frames_to_send`` takes its output, a packet stage ran, a packet
        # was queued for or released by neighbour resolution, timers ran); the loop clears it
        # after asking ``poll_at``. Echo, ARP and ND answers leave it alone, and so do the TCP
        # segments that arm no timer earlier than the loop's deadline (most): a deadline that
        # moved later or went away is left stale, the loop wakes early once and asks again
        # (``nf.loop``), it never wakes late.
        self.timers_dirty = False
        self._ident = 0
        self._now = 0.0
        self._by_ethertype: dict[int, Callable[[EthernetRepr, memoryview, float], None]] = {
            ETH_IPV4: self._receive_ipv4,
            ETH_IPV6: self._receive_ipv6,
        }

    # ---- public verbs ------------------------------------------------------------------------
    def startup_frames(self, now: float | None = None) -> list[bytes]:
        """Gratuitous ARP per IPv4 VIP, unsolicited Neighbor Advertisement per IPv6 VIP.

        ``now`` stamps them for packet stages (a capture), like any other frame.
        """
        if now is not None:
            self._now = now
        for vip in sorted(self.v4):
            garp = arp_frame(BROADCAST, self.mac, arp.OP_REQUEST, vip, bytes(6), vip)
            self._transmit(garp, self._now)
        for vip in sorted(self.v6):
            na = NdiscRepr(icmpv6.NEIGHBOR_ADVERT, vip, self.mac, override=True)
            self._send_icmpv6(vip, ipv6.ALL_NODES, na.emit(vip, ipv6.ALL_NODES), None, self._now)
        out, self._out = self._out, []
        return out

    def receive_frame(self, frame: bytes | memoryview, now: float) -> None:
        self._now = now
        self.counters["rx.frames"] += 1
        try:
            chain = self.packet_chain
            if chain is not None and chain.stages:
                self.timers_dirty = True  # a stage (a capture) keeps timers of its own
                if not chain.run(frame, "in", now):
                    self.counters["drop.stage"] += 1
                    return
            ethertype = frame[12:14]
            if frame[0:6] == self.mac:  # hot paths: untagged unicast to us, no header objects
                if ethertype == b"\x08\x00":
                    self._receive_ipv4_unicast(frame, now)
                    return
                if ethertype == b"\x08\x06":
                    self._receive_arp(memoryview(frame), now)
                    return
                if ethertype == b"\x86\xdd" and frame[20:21] == b"\x3a" and frame[54:55] == b"\x80":
                    self._receive_echo_v6(memoryview(frame), now)
                    return
            if ethertype == b"\x08\x06" and frame[0:6] == BROADCAST:
                self._receive_arp(memoryview(frame), now)
                return
            eth, payload = EthernetRepr.parse(frame)
            if eth.dst not in self.listen_macs:
                raise WireError("not_for_us", "destination MAC")
            if eth.vlan is not None:
                raise WireError("unsupported", "802.1Q tagged frame")
            if eth.src[0] & 1:
                raise WireError("bad_source", "multicast source MAC")
            handler = self._by_ethertype.get(eth.ethertype)
            if handler is None:
                raise WireError("unsupported", f"ethertype {eth.ethertype:#06x}")
            handler(eth, payload, now)
        except DecodeError as exc:
            self.counters["drop." + reason_of(exc)] += 1
        except Exception:  # noqa: BLE001 - a bug must cost one frame, never the loop
            self.counters["drop.internal"] += 1

    def frames_to_send(self, now: float) -> list[bytes]:
        """Replies and the transport's output, Ethernet-framed, in order."""
        self._now = now
        if self.tcp is not None:
            try:
                output = self.tcp.take_output()
            except Exception:  # noqa: BLE001
                self.counters["drop.internal"] += 1
                output = []
            for item in output:
                try:
                    src, dst, segment = item
                    self._send_ip(src, dst, ipv4.PROTO_TCP, segment, now)
                except Exception:  # noqa: BLE001 - a malformed output item costs itself only
                    self.counters["drop.internal"] += 1
            if self.tcp.timers_moved:  # this wake's segments (or a stage) armed an earlier timer
                self.timers_dirty = True
        out, self._out = self._out, []
        return out

    def poll_at(self) -> float | None:
        t = self.pending.poll_at()  # asked on most TCP wakes: no list, no min()
        if self.tcp is not None:
            u = self._tcp_poll_at()
            if u is not None and (t is None or u < t):
                t = u
        return t

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.timers_dirty = True
        for dst, src in self.pending.due(now):
            self._probe(dst, src, now)
        if self.tcp is not None:
            t = self._tcp_poll_at()
            if t is not None and t <= now:
                try:
                    self.tcp.handle_timer(now)
                except Exception:  # noqa: BLE001
                    self.counters["drop.internal"] += 1

    def _tcp_poll_at(self) -> float | None:
        if self.tcp is None:
            return None
        try:
            return self.tcp.poll_at()
        except Exception:  # noqa: BLE001
            self.counters["drop.internal"] += 1
            return None

    # ---- ARP -------------------------------------------------------------------------------
    def _receive_arp(self, frame: memoryview, now: float) -> None:
        """Untagged ARP to our MAC or broadcast (a tagged one is dropped before it gets here)."""
        if frame[6] & 1:
            raise WireError("bad_source", "multicast source MAC")
        op, sha, spa, _tha, tpa = arp.check_message(frame, 14)
        if sha[0] & 1:
            raise WireError("bad_source", "multicast ARP sender address")
        sender_ok = ipv4.is_unicast_v4(spa) and spa not in self.v4
        if tpa not in self.v4:
            if sender_ok:
                self.neighbours.update_if_known(spa, sha)
            raise WireError("not_for_us", "ARP for another address")
        if sender_ok:
            self._learn(spa, sha, now)
        if op == arp.OP_REQUEST:
            self._transmit(arp_frame(sha, self.mac, arp.OP_REPLY, tpa, sha, spa), now)
            self.counters["arp.replied"] += 1
        else:
            self.counters["arp.replies_received"] += 1

    # ---- IPv4 ------------------------------------------------------------------------------
    def _receive_ipv4_unicast(self, frame: bytes | memoryview, now: float) -> None:
        """Untagged IPv4 to our MAC, checked straight from the frame's bytes (no header objects).

        ``frame`` stays what the port gave (usually ``bytes``: slicing it for the checksums and
        the reply costs no extra copy); TCP gets a memoryview of its segment."""
        if frame[6] & 1:
            raise WireError("bad_source", "multicast source MAC")
        # The commonest packet (20-byte header, checksum right, not a fragment) is checked here,
        # without check_header's call and tuple; any other goes to check_header, which raises
        # the same reasons or accepts it (IP options).
        size = len(frame)
        if size >= 34 and frame[14] == 0x45:
            _vihl, _tos, total, _id, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(
                frame, 14
            )
            fast = 20 <= total <= size - 14 and not frag & 0x3FFF and sums_to_ones(frame[14:34])
        else:
            fast = False
        if fast:
            hlen = 20
        else:
            hlen, total, _tos, _ident, _frag, _ttl, proto, src, dst = ipv4.check_header(frame, 14)
        if dst not in self.v4:
            raise WireError("not_for_us", "IPv4 destination")
        if not 0 < src[0] < 224 or src in self.v4:  # ipv4.is_unicast_v4, inlined (hot path)
            raise WireError("bad_source", "IPv4 source")
        mac = frame[6:12]
        if self._neighbour_macs.get(src) == mac and src not in self._waiting:
            self._neighbour_macs.move_to_end(src)  # known, same MAC: NeighbourTable.learn inline
        else:
            self._learn(src, bytes(mac), now)
        if proto == 6:  # ipv4.PROTO_TCP; _deliver_tcp inlined
            tcp = self.tcp
            if tcp is None:
                raise WireError("no_transport", "TCP without a transport handler")
            tcp.receive_tcp(src, dst, memoryview(frame)[14 + hlen : 14 + total], now)
        elif proto == 1:  # ipv4.PROTO_ICMP
            self._transmit(icmp.echo_reply_v4(frame, 14, hlen, total, self.mac), now)
            self.counters["icmp.echo_replied"] += 1
        elif proto == ipv4.PROTO_UDP:
            UdpRepr.parse(frame[14 + hlen : 14 + total], src, dst)
            raise WireError("unsupported", "UDP")
        else:
            raise WireError("unsupported", f"IP protocol {proto}")

    def _receive_ipv4(self, eth: EthernetRepr, payload: memoryview, now: float) -> None:
        """IPv4 in a broadcast/multicast frame (unicast to us takes ``_receive_ipv4_unicast``)."""
        Ipv4Repr.parse(payload)  # a malformed packet is counted as such
        raise WireError("not_for_us", "IPv4 in a broadcast or multicast frame")

    def _deliver_tcp(self, src: bytes, dst: bytes, segment: memoryview, now: float) -> None:
        if self.tcp is None:
            raise WireError("no_transport", "TCP without a transport handler")
        self.tcp.receive_tcp(src, dst, segment, now)

    # ---- IPv6 ------------------------------------------------------------------------------
    def _receive_ipv6(self, eth: EthernetRepr, payload: memoryview, now: float) -> None:
        ip, l4 = Ipv6Repr.parse(payload)
        if ip.src[0] == 0xFF:
            raise WireError("bad_source", "multicast IPv6 source")
        if ip.next_header == ipv6.NH_ICMPV6:
            kind = icmpv6.icmpv6_type(l4)
            if kind == icmpv6.NEIGHBOR_SOLICIT:
                return self._receive_ns(eth, ip, l4, now)
            if kind == icmpv6.NEIGHBOR_ADVERT:
                return self._receive_na(eth, ip, l4, now)
        if ip.dst not in self.v6:
            raise WireError("not_for_us", "IPv6 destination")
        if ip.src == ipv6.UNSPECIFIED or ip.src in self.v6:
            raise WireError("bad_source", "IPv6 source")
        if eth.dst != self.mac:
            raise WireError("not_for_us", "unicast IPv6 in a multicast frame")
        self._learn(ip.src, eth.src, now)
        if ip.next_header == ipv6.NH_TCP:
            self._deliver_tcp(ip.src, ip.dst, l4, now)
        elif ip.next_header == ipv6.NH_ICMPV6:
            reply = icmpv6.echo_reply_v6(l4, ip.src, ip.dst)
            self._send_icmpv6(ip.dst, ip.src, reply, eth.src, now, hop_limit=ipv6.DEFAULT_HOP_LIMIT)
            self.counters["icmp.echo_replied"] += 1
        else:
            UdpRepr.parse(l4, ip.src, ip.dst)
            raise WireError("unsupported", "UDP")

    def _receive_echo_v6(self, frame: memoryview, now: float) -> None:
        """Untagged ICMPv6 echo request (no extension headers) to our MAC, from the frame's bytes."""
        if frame[6] & 1:
            raise WireError("bad_source", "multicast source MAC")
        _vtf, plen, _nh, _hlim, src, dst = ipv6.check_fixed_header(frame, 14)
        if src[0] == 0xFF:
            raise WireError("bad_source", "multicast IPv6 source")
        if dst not in self.v6:
            raise WireError("not_for_us", "IPv6 destination")
        if src == ipv6.UNSPECIFIED or src in self.v6:
            raise WireError("bad_source", "IPv6 source")
        self._learn(src, bytes(frame[6:12]), now)
        self._transmit(icmpv6.echo_reply_frame_v6(frame, 14, plen, self.mac), now)
        self.counters["icmp.echo_replied"] += 1

    def _receive_ns(self, eth: EthernetRepr, ip: Ipv6Repr, l4: memoryview, now: float) -> None:
        if ip.hop_limit != icmpv6.ND_HOP_LIMIT:
            raise WireError("bad_hop_limit", f"NS with hop limit {ip.hop_limit}")
        ns, _ = NdiscRepr.parse(l4, ip.src, ip.dst)
        if ns.target not in self.v6:
            raise WireError("not_for_us", "NS for another address")
        if ip.dst != ns.target and ip.dst != ipv6.solicited_node(ns.target):
            raise WireError("not_for_us", "NS sent to an unrelated address")
        if ip.src in self.v6:
            raise WireError("bad_source", "NS from one of our own addresses")
        if ip.src == ipv6.UNSPECIFIED:
            # Duplicate address detection by another node: defend, to all nodes, not solicited.
            if ns.lladdr is not None or ip.dst == ns.target:
                raise WireError("malformed", "DAD NS with a source link-layer option")
            na = NdiscRepr(icmpv6.NEIGHBOR_ADVERT, ns.target, self.mac, override=True)
            self._send_icmpv6(
                ns.target, ipv6.ALL_NODES, na.emit(ns.target, ipv6.ALL_NODES), None, now
            )
        else:
            if ns.lladdr is not None and ns.lladdr[0] & 1:
                raise WireError("bad_source", "multicast source link-layer address")
            peer_mac = ns.lladdr or eth.src
            self._learn(ip.src, peer_mac, now)
            na = NdiscRepr(
                icmpv6.NEIGHBOR_ADVERT, ns.target, self.mac, solicited=True, override=True
            )
            self._send_icmpv6(ns.target, ip.src, na.emit(ns.target, ip.src), peer_mac, now)
        self.counters["nd.replied"] += 1

    def _receive_na(self, eth: EthernetRepr, ip: Ipv6Repr, l4: memoryview, now: float) -> None:
        if ip.hop_limit != icmpv6.ND_HOP_LIMIT:
            raise WireError("bad_hop_limit", f"NA with hop limit {ip.hop_limit}")
        na, _ = NdiscRepr.parse(l4, ip.src, ip.dst)
        if na.solicited and ip.dst[0] == 0xFF:
            raise WireError("malformed", "solicited NA to a multicast address")
        if na.target in self.v6:
            self.counters["nd.conflict"] += 1
            raise WireError("not_for_us", "NA for one of our addresses from another node")
        if ip.dst not in self.v6 and ip.dst != ipv6.ALL_NODES:
            raise WireError("not_for_us", "NA for another node")
        mac = na.lladdr or eth.src
        if mac[0] & 1:
            raise WireError("bad_source", "multicast target link-layer address")
        if na.solicited or na.target in self.pending:
            self._learn(na.target, mac, now)
        else:
            self.neighbours.update_if_known(na.target, mac)
        self.counters["nd.adverts_received"] += 1

    def _send_icmpv6(
        self,
        src: bytes,
        dst: bytes,
        message: bytes,
        mac: bytes | None,
        now: float,
        hop_limit: int = icmpv6.ND_HOP_LIMIT,
    ) -> None:
        """ICMPv6 with a known link-layer destination (``mac``, or the multicast MAC of ``dst``)."""
        packet = Ipv6Repr(src, dst, ipv6.NH_ICMPV6, len(message), hop_limit).emit(message)
        eth_dst = mac if mac is not None else ipv6_multicast_mac(dst)
        self._transmit(EthernetRepr(eth_dst, self.mac, ETH_IPV6).emit(packet), now)

    # ---- neighbours and output ---------------------------------------------------------------
    def _learn(self, ip: bytes, mac: bytes, now: float) -> None:
        self.neighbours.learn(ip, mac)
        if ip in self._waiting:
            self.timers_dirty = True
            header = mac + self.mac + (_ETHERTYPE_IPV4 if len(ip) == 4 else _ETHERTYPE_IPV6)
            for packet in self.pending.resolved(ip):
                self._transmit(header + packet, now)

    def _send_ip(self, src: bytes, dst: bytes, proto: int, l4: bytes, now: float) -> None:
        """Frame an upper-layer message from one of our addresses, resolving ``dst``."""
        gso_size = getattr(l4, "gso_size", 0)  # a super-segment the port's offload will cut
        if len(src) == 4 and src in self.v4 and len(dst) == 4:
            if 20 + len(l4) > self.mtu and not gso_size:
                self.counters["drop.too_big"] += 1
                return
            self._ident = ident = (self._ident + 1) & 0xFFFF
            header = ipv4.build_header(src, dst, proto, len(l4), ident)
            ethertype = _ETHERTYPE_IPV4
        elif len(src) == 16 and src in self.v6 and len(dst) == 16:
            if 40 + len(l4) > self.mtu and not gso_size:
                self.counters["drop.too_big"] += 1
                return
            header = ipv6.build_header(src, dst, proto, len(l4))
            ethertype = _ETHERTYPE_IPV6
        else:
            self.counters["drop.bad_source"] += 1
            return
        mac = self._neighbour_macs.get(dst)  # NeighbourTable.lookup, inline
        if mac is not None:
            self._neighbour_macs.move_to_end(dst)
            frame = b"".join((mac, self.mac, ethertype, header, l4))  # one copy of the payload
            self._transmit(gso(frame, gso_size) if gso_size else frame, now)
        elif gso_size:  # not queued: a resolved neighbour's frame would lose its offload mark
            self.counters["drop.too_big"] += 1
        else:
            self.timers_dirty = True
            if self.pending.enqueue(dst, src, header + l4, now):
                self._probe(dst, src, now)

    def _probe(self, dst: bytes, src: bytes, now: float) -> None:
        """ARP request or Neighbor Solicitation for ``dst`` from our address ``src``."""
        if len(dst) == 4:
            self._transmit(arp_frame(BROADCAST, self.mac, arp.OP_REQUEST, src, bytes(6), dst), now)
            self.counters["arp.requests_sent"] += 1
        else:
            group = ipv6.solicited_node(dst)
            ns = NdiscRepr(icmpv6.NEIGHBOR_SOLICIT, dst, self.mac)
            self._send_icmpv6(src, group, ns.emit(src, group), None, now)
            self.counters["nd.solicits_sent"] += 1

    def _transmit(self, frame: bytes, now: float) -> None:
        chain = self.packet_chain
        if chain is not None and chain.stages:
            self.timers_dirty = True
            if not chain.run(frame, "out", now):
                self.counters["drop.stage"] += 1
                return
        if len(self._out) >= MAX_TX_QUEUE:
            self.counters["drop.tx_full"] += 1
            return
        self._out.append(frame)
        self.counters["tx.frames"] += 1


__all__ = ["HostStack", "TransportHandler"]
