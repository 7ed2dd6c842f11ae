"""The floor for ICMP/ARP answering in Python: a minimal struct-based responder, and a comparison.

The floor does the least a correct-looking answer needs (ARP reply, ICMP echo reply with a full
checksum recomputation) and checks almost nothing: it is what "fast as Python gets" costs, so the
host stack's figure can be read as a ratio to it.

    python benchmarks/icmp_floor.py inproc [-n 50000]
        CPU per answered frame, host stack vs floor, interleaved in one run (ratios printed).
    python benchmarks/icmp_floor.py serve --tap tapfloor0 --netns floorlab --ip 192.0.2.10 \
            --peer 192.0.2.1/24 [--seconds 30]
        Answer on a TAP (created in the namespace, removed on exit) for ``ping -f`` from the
        namespace (``nf bench icmp`` compares this with the NF on the same topology).
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.host import HostStack  # noqa: E402

_ETH = struct.Struct("!6s6sH")
_ARP_REPLY_HEAD = b"\x00\x01\x08\x00\x06\x04\x00\x02"
_IP = struct.Struct("!BBHHHBBH4s4s")


def _checksum(data: bytes) -> int:
    """RFC 1071 in one C-level pass: the big integer's residue mod 0xFFFF is the folded sum."""
    if len(data) & 1:
        data += b"\x00"
    total = int.from_bytes(data, "big")
    s = total % 0xFFFF or (0xFFFF if total else 0)
    return ~s & 0xFFFF


class FloorResponder:
    """Answers ARP requests for ``ip`` and ICMP echo requests to ``ip``; nothing else."""

    def __init__(self, mac: bytes, ip: bytes) -> None:
        self.mac, self.ip = mac, ip

    def respond(self, frame: bytes) -> bytes | None:
        if len(frame) < 42:
            return None
        ethertype = frame[12:14]
        if ethertype == b"\x08\x06" and frame[20:22] == b"\x00\x01" and frame[38:42] == self.ip:
            sha, spa = frame[22:28], frame[28:32]
            return (
                _ETH.pack(sha, self.mac, 0x0806) + _ARP_REPLY_HEAD + self.mac + self.ip + sha + spa
            )
        if ethertype == b"\x08\x00" and frame[23] == 1 and frame[30:34] == self.ip:
            ihl = (frame[14] & 0x0F) * 4
            total = int.from_bytes(frame[16:18], "big")
            icmp = bytearray(frame[14 + ihl : 14 + total])
            if len(icmp) < 8 or icmp[0] != 8:
                return None
            icmp[0] = 0
            icmp[2:4] = b"\x00\x00"
            icmp[2:4] = _checksum(bytes(icmp)).to_bytes(2, "big")
            hdr = bytearray(
                _IP.pack(0x45, 0, 20 + len(icmp), 0, 0x4000, 64, 1, 0, self.ip, frame[26:30])
            )
            hdr[10:12] = _checksum(bytes(hdr)).to_bytes(2, "big")
            return _ETH.pack(frame[6:12], self.mac, 0x0800) + bytes(hdr) + bytes(icmp)
        return None


# ---- in-process comparison ---------------------------------------------------------------------
MAC = bytes.fromhex("02000000aa01")
PEER_MAC = bytes.fromhex("02000000bb02")
VIP = bytes([192, 0, 2, 10])
PEER = bytes([192, 0, 2, 1])


def sample_frames() -> dict[str, bytes]:
    data = bytes(range(56))
    icmp = bytearray(b"\x08\x00\x00\x00\x12\x34\x00\x01" + data)
    icmp[2:4] = _checksum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(_IP.pack(0x45, 0, 20 + len(icmp), 7, 0x4000, 64, 1, 0, PEER, VIP))
    ip[10:12] = _checksum(bytes(ip)).to_bytes(2, "big")
    echo = _ETH.pack(MAC, PEER_MAC, 0x0800) + bytes(ip) + bytes(icmp)
    arp = (
        _ETH.pack(b"\xff" * 6, PEER_MAC, 0x0806)
        + b"\x00\x01\x08\x00\x06\x04\x00\x01"
        + PEER_MAC
        + PEER
        + bytes(6)
        + VIP
    )
    return {"icmp_echo": echo, "arp_request": arp}


def _time_host(frame: bytes, n: int) -> float:
    counters: collections.Counter[str] = collections.Counter()
    host = HostStack(MAC, [VIP], counters=counters)
    receive, send = host.receive_frame, host.frames_to_send
    t0 = time.process_time()
    for _ in range(n):
        receive(frame, 1.0)
        send(1.0)
    elapsed = time.process_time() - t0
    assert counters["tx.frames"] == n, counters
    return elapsed / n


def _time_floor(frame: bytes, n: int) -> float:
    respond = FloorResponder(MAC, VIP).respond
    t0 = time.process_time()
    for _ in range(n):
        if respond(frame) is None:
            raise AssertionError("floor did not answer")
    return (time.process_time() - t0) / n


def inproc(n: int, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """Best-of-``rounds`` CPU seconds per frame (host, floor), interleaved so load hits both."""
    results: dict[str, tuple[float, float]] = {}
    for name, frame in sample_frames().items():
        floor = FloorResponder(MAC, VIP).respond(frame)
        counters: collections.Counter[str] = collections.Counter()
        host = HostStack(MAC, [VIP], counters=counters)
        host.receive_frame(frame, 0.0)
        ours = host.frames_to_send(0.0)
        assert floor is not None and len(ours) == 1 and len(ours[0]) == len(floor), name
        best_host = best_floor = float("inf")
        for _ in range(rounds):
            best_host = min(best_host, _time_host(frame, n))
            best_floor = min(best_floor, _time_floor(frame, n))
        results[name] = (best_host, best_floor)
    return results


# ---- on a TAP ------------------------------------------------------------------------------------
def serve(
    tap: str,
    netns: str | None,
    ip: str,
    peers: list[str],
    seconds: float,
    own_netns: bool = False,
) -> int:
    from pipeline.io.tap import TapPort

    owner = os.getpid()

    def interrupted(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            # A helper pyroute2 forked (NetNS) inherits this handler and is stopped with
            # SIGTERM: unwinding our stack there would run the cleanup below and delete the
            # namespace under the running floor (seen under load: nf bench icmp then fails).
            os._exit(0)
        raise KeyboardInterrupt  # SIGTERM too closes the port (and removes its namespace)

    signal.signal(signal.SIGTERM, interrupted)
    if own_netns and netns is not None and not os.path.exists(f"/var/run/netns/{netns}"):
        # The caller made the namespace and has removed it already (it was stopped before we
        # started): making a new one here would leave it behind.
        print(f"floor: namespace {netns} is gone", flush=True)
        return 1
    responder = FloorResponder(MAC, ipaddress.IPv4Address(ip).packed)
    answered = 0
    port = None
    try:
        port = TapPort(tap, netns=netns, peer_address=peers).open()
        print(f"floor: ready on {tap}", flush=True)
        deadline = time.monotonic() + seconds
        fd = port.fileno()
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            for frame in port.read_frames(64):
                reply = responder.respond(frame)
                if reply is not None and port.write_frame(reply):
                    answered += 1
    except KeyboardInterrupt:
        pass
    finally:
        if port is not None:
            port.close()
        if os.getpid() != owner:  # any forked helper that got here: not ours to clean up
            os._exit(0)
        if own_netns and netns is not None and os.path.exists(f"/var/run/netns/{netns}"):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)
    print(f"floor: answered {answered} frames")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inproc")
    p.add_argument("-n", type=int, default=50000, help="frames per round (default 50000)")
    p.add_argument("--rounds", type=int, default=5)
    s = sub.add_parser("serve")
    s.add_argument("--tap", default="tapfloor0")
    s.add_argument("--netns")
    s.add_argument("--ip", default="192.0.2.10")
    s.add_argument("--peer", action="append", default=[])
    s.add_argument("--seconds", type=float, default=30.0)
    s.add_argument(
        "--own-netns",
        action="store_true",
        help="delete the namespace on exit even when it existed before (the caller made it)",
    )
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        return serve(args.tap, args.netns, args.ip, args.peer, args.seconds, args.own_netns)
    for name, (host, floor) in inproc(args.n, args.rounds).items():
        print(
            f"{name:12s} host stack {host * 1e6:6.2f} us/frame   floor {floor * 1e6:6.2f} us/frame"
            f"   ratio {host / floor:4.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
