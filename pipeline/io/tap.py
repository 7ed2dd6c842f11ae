"""TAP attachment: create or attach a Linux TAP device, optionally inside a lab network namespace.

The NF side of the wire is our file descriptor (``/dev/net/tun`` with ``IFF_TAP | IFF_NO_PI``);
the kernel side is the interface the kernel sees, configured with ``peer_address`` and link up.

With ``offload=True`` the descriptor also carries a ``virtio_net_hdr`` per frame (``IFF_VNET_HDR``)
and the device offers checksum offload and TSO (``TUNSETOFFLOAD``), as wireguard-go does: the
kernel's TCP then hands over segments of up to 64 KiB (one frame instead of ~45) with the TCP/UDP
checksum left partial. ``read_frames`` strips the header and completes such a checksum, so the
frames it returns are ordinary, fully checksummed Ethernet frames, only larger than the MTU;
``write_frame`` prefixes an all-zero header, except for a TCP super-segment from our own stack
(``pipeline.wire.gso.GsoBytes``): that one goes out as TSO (``gso_size`` payload bytes per wire
segment, checksum left to the kernel), one write instead of ~40.
A device this class creates is *non-persistent*: the kernel removes it when our descriptor closes,
so a crash (even SIGKILL) cannot leak it. A namespace it creates is deleted on ``close()``. A
pre-existing device or namespace is attached to and left in place.

Every failure is a :class:`TapError` carrying a one-line message for the user.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pipeline.wire.checksum import ones_sum, pseudo_header_sum
from pipeline.wire.gso import ChecksumOk

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
VNET_HDR = struct.Struct("<BBHHHH")  # virtio_net_hdr (little-endian, as tun uses on x86/arm)
VNET_HDR_LEN = VNET_HDR.size  # 10
VNET_F_NEEDS_CSUM = 0x01
VNET_F_DATA_VALID = 0x02
VNET_GSO_TCPV4 = 1
VNET_GSO_TCPV6 = 4
VNET_NONE = bytes(VNET_HDR_LEN)
MAX_GSO_FRAME = 14 + 4 + 65535  # Ethernet (+ a tag) and the largest IP packet
IFNAMSIZ = 16
IFA_F_NODAD = 0x02
NETNS_RUN_DIR = "/var/run/netns"


class TapError(Exception):
    """A one-line, user-facing reason the TAP could not be set up."""


def _netlink() -> Any:
    try:
        import pyroute2
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise TapError(f"pyroute2 is not installed: {exc}") from None
    return pyroute2


@contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block with this thread's network namespace switched to ``name`` (None: stay)."""
    if name is None:
        yield
        return
    netns = _netlink().netns
    saved = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        netns.setns(name, flags=0)
        yield
    finally:
        netns.setns(saved, flags=0)
        os.close(saved)


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_RUN_DIR, name))


def from_vnet(raw: bytes) -> tuple[bytes, bool] | None:
    """(frame, checksum completed) from ``virtio_net_hdr`` + frame; None if it cannot be honoured.

    ``VIRTIO_NET_HDR_F_NEEDS_CSUM``: the checksum field at ``csum_start + csum_offset`` holds
    only the pseudo-header sum; the one's-complement sum from ``csum_start`` to the end (that
    field included) complemented is the full checksum (virtio spec 5.1.6.2). The frame's own
    length fields already cover a TSO/GSO super-segment, so nothing else needs rewriting.
    """
    if len(raw) < VNET_HDR_LEN:
        return None
    flags, _gso_type, _hdr_len, _gso_size, start, offset = VNET_HDR.unpack_from(raw)
    if not flags & VNET_F_NEEDS_CSUM:
        if flags & VNET_F_DATA_VALID:
            return ChecksumOk(memoryview(raw)[VNET_HDR_LEN:]), False
        return raw[VNET_HDR_LEN:], False
    frame = raw[VNET_HDR_LEN:]
    field = start + offset
    if field + 2 > len(frame) or offset < 0:
        return None
    buf = bytearray(frame)
    s = ones_sum(memoryview(buf)[start:])
    csum = ~s & 0xFFFF or 0xFFFF  # a computed zero is sent as all ones (UDP's rule; TCP agrees)
    buf[field] = csum >> 8
    buf[field + 1] = csum & 0xFF
    return ChecksumOk(buf), True  # completed from the data itself: nothing left to verify


def to_vnet_gso(
    frame: bytes | bytearray | memoryview, gso_size: int
) -> tuple[bytes | memoryview, ...] | None:
    """``writev`` parts sending an untagged IPv4/IPv6 TCP super-segment as TSO: a header asking
    the kernel to cut it into ``gso_size``-byte segments, the frame with its TCP checksum field
    holding the pseudo-header sum (CHECKSUM_PARTIAL, as the kernel itself leaves it). None when
    the frame is not such a segment (it is then written as it is)."""
    view = memoryview(frame)
    ethertype = bytes(view[12:14])
    if ethertype == b"\x08\x00" and len(view) >= 34 and view[23] == 6:
        l4, gso_type = 14 + (view[14] & 0x0F) * 4, VNET_GSO_TCPV4
        src, dst = bytes(view[26:30]), bytes(view[30:34])
    elif ethertype == b"\x86\xdd" and len(view) >= 54 and view[20] == 6:
        l4, gso_type = 54, VNET_GSO_TCPV6
        src, dst = bytes(view[22:38]), bytes(view[38:54])
    else:
        return None
    if len(view) < l4 + 20:
        return None
    hdr_len = l4 + (view[l4 + 12] >> 4) * 4
    psum = pseudo_header_sum(src, dst, 6, len(view) - l4)
    vnet = VNET_HDR.pack(VNET_F_NEEDS_CSUM, gso_type, hdr_len, gso_size, l4, 16)
    return vnet, view[: l4 + 16], psum.to_bytes(2, "big"), view[l4 + 18 :]


class TapPort:
    """A TAP device as a frame source and sink (``read_frames``/``write_frame``/``fileno``)."""

    def __init__(
        self,
        name: str = "tapnf0",
        *,
        mtu: int = 1500,
        netns: str | None = None,
        peer_address: Sequence[str] = (),
        offload: bool = False,
    ) -> None:
        self.name = name
        self.offload = offload
        self.mtu = mtu
        self.netns = netns
        self.peer_address = tuple(peer_address)
        self.fd: int | None = None
        self.created_device = False
        self.created_netns = False
        self.write_drops = 0
        self.rx_gso_frames = 0  # offload: frames longer than one MTU (kernel TSO/GSO)
        self.rx_csum_completed = 0  # offload: partial checksums we completed
        self.rx_bad_vnet = 0  # offload: header we could not honour; frame dropped
        self.tx_gso_frames = 0  # offload: super-segments handed to the kernel to cut
        self._bufsize = VNET_HDR_LEN + MAX_GSO_FRAME if offload else max(mtu + 64, 2048)

    # ---- set-up ----------------------------------------------------------------------------
    def open(self) -> TapPort:
        if len(self.name.encode()) >= IFNAMSIZ:
            raise TapError(
                f"interface name {self.name!r} is too long (at most {IFNAMSIZ - 1} bytes)"
            )
        if not os.path.exists(TUN_PATH):
            raise TapError(f"{TUN_PATH} is missing: load the tun module (modprobe tun)")
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self) -> None:
        pr = _netlink()
        if self.netns is not None and not netns_exists(self.netns):
            try:
                pr.netns.create(self.netns)
            except OSError as exc:
                raise TapError(
                    f"cannot create network namespace {self.netns!r}: {exc.strerror}"
                ) from None
            self.created_netns = True
            # pyroute2 can return before the bind mount under /var/run/netns is visible; moving
            # the device there would then fail (seen about 1 start in 12). Wait for it, bounded.
            for _ in range(200):
                if netns_exists(self.netns):
                    break
                time.sleep(0.01)
            else:
                raise TapError(f"network namespace {self.netns!r} did not appear after creation")
        # Where does the device live now? Attach there; otherwise create it in our namespace.
        found, home = self._find_device()
        if found:
            with in_netns(home):
                self.fd = self._attach()
        else:
            self.fd = self._attach()
            self.created_device = True
            if self.netns is not None:
                self._move_to_netns()
        self._configure_peer()

    def _find_device(self) -> tuple[bool, str | None]:
        """(found, namespace) of an existing device named ``self.name``; None = our namespace.

        A pre-existing device is used where it is: in the lab namespace, or in ours when no
        namespace is configured.
        """
        pr = _netlink()
        if self.netns is not None:
            with pr.NetNS(self.netns) as ns:
                if ns.link_lookup(ifname=self.name):
                    return True, self.netns
        with pr.IPRoute() as ipr:
            if ipr.link_lookup(ifname=self.name):
                if self.netns is not None:
                    raise TapError(
                        f"device {self.name!r} exists outside namespace {self.netns!r}; "
                        "delete it or drop interface.netns"
                    )
                return True, None
        return False, None

    def _attach(self) -> int:
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError:
            raise TapError(
                f"permission denied opening {TUN_PATH}: needs CAP_NET_ADMIN (run as root)"
            ) from None
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if self.offload else 0)
        ifr = struct.pack("16sH", self.name.encode(), flags)
        try:
            fcntl.ioctl(fd, TUNSETIFF, ifr)
            if self.offload:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EPERM:
                raise TapError(
                    f"cannot attach TAP {self.name!r}: needs CAP_NET_ADMIN (run as root)"
                ) from None
            if exc.errno == errno.EBUSY:
                raise TapError(
                    f"TAP device {self.name!r} is busy (another process has it open)"
                ) from None
            if exc.errno == errno.EINVAL:
                raise TapError(f"{self.name!r} exists and is not a TAP device") from None
            raise TapError(f"cannot attach TAP {self.name!r}: {exc.strerror}") from None
        return fd

    def _move_to_netns(self) -> None:
        pr = _netlink()
        with pr.IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=self.name)[0]
            ipr.link("set", index=idx, mtu=self.mtu)
            ipr.link("set", index=idx, net_ns_fd=self.netns)

    def _configure_peer(self) -> None:
        pr = _netlink()
        ctx = pr.NetNS(self.netns) if self.netns is not None else pr.IPRoute()
        with ctx as ipr:
            idx = ipr.link_lookup(ifname=self.name)[0]
            if self.created_device:
                ipr.link("set", index=idx, mtu=self.mtu)
            for cidr in self.peer_address:
                iface = ipaddress.ip_interface(cidr)
                try:
                    ipr.addr(
                        "add",
                        index=idx,
                        address=str(iface.ip),
                        prefixlen=iface.network.prefixlen,
                        flags=IFA_F_NODAD if iface.version == 6 else 0,
                    )
                except pr.NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise TapError(f"cannot add address {cidr} to {self.name}: {exc}") from None
            ipr.link("set", index=idx, state="up")
            if self.netns is not None:
                lo = ipr.link_lookup(ifname="lo")
                if lo:
                    ipr.link("set", index=lo[0], state="up")

    # ---- FrameSource / FrameSink -----------------------------------------------------------
    def fileno(self) -> int:
        if self.fd is None:
            raise TapError("TAP is not open")
        return self.fd

    def read_frames(self, max_frames: int = 64) -> list[bytes]:
        frames: list[bytes] = []
        fd, size, offload, read = self.fileno(), self._bufsize, self.offload, os.read
        for _ in range(max_frames):
            try:
                frame = read(fd, size)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    break
                if exc.errno in (errno.EBADFD, errno.ENXIO, errno.ENODEV):
                    raise TapError(f"TAP {self.name!r} went away ({exc.strerror})") from None
                raise
            if not frame:
                break
            if offload:
                stripped = self._from_vnet(frame)
                if stripped is None:
                    continue
                frame = stripped
            frames.append(frame)
        return frames

    def _from_vnet(self, raw: bytes) -> bytes | None:
        """The Ethernet frame behind a ``virtio_net_hdr``, its partial checksum completed."""
        out = from_vnet(raw)
        if out is None:
            self.rx_bad_vnet += 1
            return None
        frame, completed = out
        if completed:
            self.rx_csum_completed += 1
        if len(frame) > self.mtu + 18:
            self.rx_gso_frames += 1
        return frame

    def write_frame(self, frame: bytes | bytearray | memoryview) -> bool:
        fd = self.fd
        if fd is None:
            raise TapError("TAP is not open")
        try:
            if self.offload:
                gso_size = getattr(frame, "gso_size", 0)
                parts = to_vnet_gso(frame, gso_size) if gso_size else None
                os.writev(fd, parts or (VNET_NONE, frame))
                if parts:
                    self.tx_gso_frames += 1
            else:
                os.write(fd, frame)
        except (BlockingIOError, InterruptedError):
            self.write_drops += 1
            return False
        except OSError as exc:
            # EIO: the kernel side is down; EINVAL: malformed frame of ours. Count, never die.
            if exc.errno in (errno.EBADFD, errno.ENXIO, errno.ENODEV):
                raise TapError(f"TAP {self.name!r} went away ({exc.strerror})") from None
            if exc.errno in (errno.EIO, errno.EINVAL, errno.ENOBUFS, errno.EMSGSIZE):
                self.write_drops += 1
                return False
            raise
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "tap",
            "name": self.name,
            "netns": self.netns,
            "mtu": self.mtu,
            "peer_address": list(self.peer_address),
            "created_device": self.created_device,
            "created_netns": self.created_netns,
            "offload": self.offload,
            "rx_gso_frames": self.rx_gso_frames,
            "rx_csum_completed": self.rx_csum_completed,
            "rx_bad_vnet": self.rx_bad_vnet,
            "tx_gso_frames": self.tx_gso_frames,
            "write_drops": self.write_drops,
        }

    def close(self) -> None:
        """Release exactly what we created: the fd (and so our non-persistent device) and the netns."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            finally:
                self.fd = None
        if self.created_netns and self.netns is not None:
            try:
                _netlink().netns.remove(self.netns)
            except OSError:
                pass
            self.created_netns = False

    def __enter__(self) -> TapPort:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
