"""``pingblock``: an example packet stage — drops ICMP and ICMPv6 echo requests to the NF.

Named in a virtual server's chain (``chain = ["pingblock", "tls:clientssl", "echo"]``), a packet
stage joins the interface's packet chain: it sees every frame, in both directions, before the
host stack (``direction == "in"``) or after it (``"out"``), and drops a frame by returning False
(tapnf counts it as ``drop.stage``). Per-frame code reads bytes directly, no parsing library.
"""

from __future__ import annotations

from pipeline.chain import Direction, PluginEnv

IPV4, IPV6 = b"\x08\x00", b"\x86\xdd"
ICMP, ICMPV6 = 1, 58
ECHO_REQUEST, ECHO_REQUEST_V6 = 8, 128


class PingBlock:
    """The factory tapnf calls (``PingBlock(arg, env)``) is also the packet stage itself."""

    def __init__(self, arg: str | None, env: PluginEnv) -> None:
        if arg:
            raise ValueError(f"pingblock takes no argument (got {arg!r})")
        self.dropped = 0

    def on_frame(self, frame: bytes | memoryview, direction: Direction, now: float) -> bool:
        if direction != "in" or len(frame) < 14:
            return True
        ethertype = bytes(frame[12:14])
        if ethertype == IPV4 and len(frame) >= 34 and frame[23] == ICMP:
            icmp = 14 + (frame[14] & 0x0F) * 4
            if len(frame) > icmp and frame[icmp] == ECHO_REQUEST:
                self.dropped += 1
                return False
        elif ethertype == IPV6 and len(frame) > 54 and frame[20] == ICMPV6:
            if frame[54] == ECHO_REQUEST_V6:
                self.dropped += 1
                return False
        return True
