"""pcapng blocks (draft-ietf-opsawg-pcapng), written and read with ``struct``.

Little-endian when written: a Section Header Block, an Interface Description Block (Ethernet,
``if_tsresol`` microseconds or nanoseconds), Enhanced Packet Blocks (``epb_flags`` inbound or
outbound, ``opt_comment``) and Decryption Secrets Blocks (TLS key log, ``0x544c534b``).
``read_pcapng`` parses either byte order (tests, tools) and raises ``DecodeError`` on anything
that is not well-formed pcapng.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pipeline.chain import Direction
from pipeline.errors import DecodeError

SHB = 0x0A0D0D0A
IDB = 0x00000001
EPB = 0x00000006
DSB = 0x0000000A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1
SECRETS_TLS_KEYLOG = 0x544C534B

OPT_END, OPT_COMMENT = 0, 1
SHB_USERAPPL = 4
IF_NAME, IF_TSRESOL = 2, 9
EPB_FLAGS = 2
FLAG_INBOUND, FLAG_OUTBOUND = 1, 2
RESOLUTIONS = {"us": 6, "ns": 9}

MAX_BLOCK = 1 << 24  # larger blocks in a file we read are corrupt
MAX_COMMENT = 1024
BUFFER = 256 * 1024  # write buffer: one syscall per ~200 full-size frames

_HDR = struct.Struct("<II")
_U32 = struct.Struct("<I")
_OPT = struct.Struct("<HH")
_SHB_BODY = struct.Struct("<IHHq")
_IDB_BODY = struct.Struct("<HHI")
_DSB_BODY = struct.Struct("<II")


def _pad(n: int) -> int:
    return -n & 3


def encode_options(options: list[tuple[int, bytes]]) -> bytes:
    """Options as ``code, length, value padded to 32 bits``, closed by ``opt_endofopt``."""
    if not options:
        return b""
    parts = []
    for code, value in options:
        parts.append(_OPT.pack(code, len(value)) + value + b"\0" * _pad(len(value)))
    parts.append(_OPT.pack(OPT_END, 0))
    return b"".join(parts)


def encode_block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body) + _pad(len(body))
    return _HDR.pack(block_type, total) + body + b"\0" * _pad(len(body)) + _U32.pack(total)


def shb_block(user_appl: str = "tapnf") -> bytes:
    opts = encode_options([(SHB_USERAPPL, user_appl.encode())])
    return encode_block(SHB, _SHB_BODY.pack(BYTE_ORDER_MAGIC, 1, 0, -1) + opts)


def idb_block(snaplen: int = 65535, resolution: str = "us", name: str = "tapnf") -> bytes:
    opts = encode_options(
        [(IF_NAME, name.encode()), (IF_TSRESOL, bytes([RESOLUTIONS[resolution]]))]
    )
    return encode_block(IDB, _IDB_BODY.pack(LINKTYPE_ETHERNET, 0, snaplen) + opts)


_EPB_HEAD = struct.Struct("<IIIIIII")  # block type, length, interface, ts high/low, lengths
_FLAGS = {
    "in": struct.pack("<HHI", EPB_FLAGS, 4, FLAG_INBOUND),
    "out": struct.pack("<HHI", EPB_FLAGS, 4, FLAG_OUTBOUND),
}
_END = b"\0\0\0\0"
_PADS = (b"", b"\0\0\0", b"\0\0", b"\0")


def epb_block(
    ts: int,
    data: bytes | memoryview,
    *,
    orig_len: int | None = None,
    direction: Direction | None = None,
    comment: str | None = None,
    interface: int = 0,
) -> bytes:
    """One frame; ``ts`` in units of the interface's resolution. Built in one join (per frame)."""
    n = len(data)
    pad = _PADS[n & 3]
    opts = b""
    if comment:
        text = comment.encode("utf-8")
        if len(text) > MAX_COMMENT:  # cut on a character boundary
            text = text[:MAX_COMMENT].decode("utf-8", "ignore").encode("utf-8")
        opts = _OPT.pack(OPT_COMMENT, len(text)) + text + _PADS[len(text) & 3]
    if direction is not None:
        opts += _FLAGS[direction]
    if opts:
        opts += _END
    total = 32 + n + len(pad) + len(opts)
    head = _EPB_HEAD.pack(
        EPB, total, interface, (ts >> 32) & 0xFFFFFFFF, ts & 0xFFFFFFFF, n, orig_len or n
    )
    return b"".join((head, data, pad, opts, _U32.pack(total)))


def dsb_block(lines: list[str], secrets_type: int = SECRETS_TLS_KEYLOG) -> bytes:
    data = "".join(line + "\n" for line in lines).encode("ascii")
    body = _DSB_BODY.pack(secrets_type, len(data)) + data + b"\0" * _pad(len(data))
    return encode_block(DSB, body)


# ---- reading (tests, tools) --------------------------------------------------------------------
@dataclass(frozen=True)
class PcapngPacket:
    ts: int  # in the interface's resolution units
    resolution: int  # 6 (us) or 9 (ns): the interface's if_tsresol
    data: bytes
    orig_len: int
    interface: int
    flags: int | None = None
    comments: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return self.ts / 10**self.resolution

    @property
    def direction(self) -> Direction | None:
        bits = (self.flags or 0) & 3
        return "in" if bits == FLAG_INBOUND else "out" if bits == FLAG_OUTBOUND else None


@dataclass
class Pcapng:
    """A parsed file: ``blocks`` (types in order), packets, interfaces (link type, resolution),
    secrets (type, bytes) in file order."""

    blocks: list[int] = field(default_factory=list)
    packets: list[PcapngPacket] = field(default_factory=list)
    interfaces: list[tuple[int, int]] = field(default_factory=list)
    secrets: list[tuple[int, bytes]] = field(default_factory=list)


def parse_options(body: bytes | memoryview, endian: str) -> Iterator[tuple[int, bytes]]:
    opt = struct.Struct(endian + "HH")
    pos = 0
    while pos + 4 <= len(body):
        code, length = opt.unpack_from(body, pos)
        pos += 4
        if code == OPT_END:
            return
        if pos + length > len(body):
            raise DecodeError("pcapng option runs past its block")
        yield code, bytes(body[pos : pos + length])
        pos += length + _pad(length)
    if pos != len(body):
        raise DecodeError("pcapng options: trailing bytes")


def read_pcapng(source: str | Path | bytes) -> Pcapng:
    """Parse a whole file (several sections allowed). Raises ``DecodeError`` on anything that is
    not well-formed pcapng."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    out = Pcapng()
    endian = ""
    pos = 0
    resolutions: list[int] = []
    while pos < len(data):
        if len(data) - pos < 12:
            raise DecodeError("pcapng: truncated block header")
        if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            magic = data[pos + 8 : pos + 12]
            if magic == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif magic == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise DecodeError("pcapng: bad byte-order magic")
            resolutions = []
        elif not endian:
            raise DecodeError("pcapng: first block is not a section header")
        btype, total = struct.unpack_from(endian + "II", data, pos)
        if total < 12 or total % 4 or total > MAX_BLOCK or pos + total > len(data):
            raise DecodeError(f"pcapng: bad block length {total}")
        if struct.unpack_from(endian + "I", data, pos + total - 4)[0] != total:
            raise DecodeError("pcapng: trailing block length differs")
        body = memoryview(data)[pos + 8 : pos + total - 4]
        out.blocks.append(btype)
        _parse_block(btype, body, endian, out, resolutions)
        pos += total
    return out


def _parse_block(
    btype: int, body: memoryview, endian: str, out: Pcapng, resolutions: list[int]
) -> None:
    if btype == SHB:
        if len(body) < 16:
            raise DecodeError("pcapng: short section header")
        if struct.unpack_from(endian + "H", body, 4)[0] != 1:
            raise DecodeError("pcapng: unsupported major version")
        list(parse_options(body[16:], endian))
    elif btype == IDB:
        if len(body) < 8:
            raise DecodeError("pcapng: short interface block")
        linktype = struct.unpack_from(endian + "H", body, 0)[0]
        resol = 6
        for code, value in parse_options(body[8:], endian):
            if code == IF_TSRESOL and len(value) == 1:
                resol = value[0]
        if resol & 0x80 or resol > 12:
            raise DecodeError(f"pcapng: unsupported if_tsresol {resol:#x}")
        resolutions.append(resol)
        out.interfaces.append((linktype, resol))
    elif btype == EPB:
        if len(body) < 20:
            raise DecodeError("pcapng: short packet block")
        iface, hi, lo, caplen, orig = struct.unpack_from(endian + "IIIII", body, 0)
        if iface >= len(resolutions):
            raise DecodeError(f"pcapng: packet on undeclared interface {iface}")
        if 20 + caplen > len(body):
            raise DecodeError("pcapng: packet data runs past its block")
        flags, comments = None, []
        for code, value in parse_options(body[20 + caplen + _pad(caplen) :], endian):
            if code == OPT_COMMENT:
                comments.append(value.decode("utf-8", "replace"))
            elif code == EPB_FLAGS and len(value) == 4:
                flags = struct.unpack(endian + "I", value)[0]
        packet = PcapngPacket(
            (hi << 32) | lo,
            resolutions[iface],
            bytes(body[20 : 20 + caplen]),
            orig,
            iface,
            flags,
            tuple(comments),
        )
        out.packets.append(packet)
    elif btype == DSB:
        if len(body) < 8:
            raise DecodeError("pcapng: short secrets block")
        stype, length = struct.unpack_from(endian + "II", body, 0)
        if 8 + length > len(body):
            raise DecodeError("pcapng: secrets run past their block")
        out.secrets.append((stype, bytes(body[8 : 8 + length])))


# ---- the writer --------------------------------------------------------------------------------
class PcapngWriter:
    """Writes one pcapng section to a file: SHB and IDB at once, then EPBs and DSBs."""

    def __init__(
        self,
        target: str | Path | IO[bytes],
        *,
        snaplen: int = 65535,
        resolution: str = "us",
        if_name: str = "tapnf",
    ) -> None:
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
        if isinstance(target, str | Path):
            self._file: IO[bytes] = open(target, "wb", buffering=BUFFER)  # noqa: SIM115
            self._owned = True
        else:
            self._file, self._owned = target, False
        self.snaplen = snaplen
        self.resolution = resolution
        self.scale = 10 ** RESOLUTIONS[resolution]
        self.bytes_written = 0
        self.frames_written = 0
        self.secrets_written = 0
        self.header_bytes = self._write(shb_block() + idb_block(snaplen, resolution, if_name))
        self._file.flush()  # a capture that never gets a frame is still a valid file

    def _write(self, block: bytes) -> int:
        self._file.write(block)
        self.bytes_written += len(block)
        return len(block)

    def write_block(self, block: bytes, frames: int = 0) -> int:
        """Append an already encoded block (``frames`` packets in it)."""
        self.frames_written += frames
        return self._write(block)

    def packet(
        self,
        ts_ns: int,
        frame: bytes | memoryview,
        direction: Direction | None = None,
        comment: str | None = None,
    ) -> bytes:
        """The EPB for a frame at ``ts_ns`` nanoseconds (cut at ``snaplen``), not yet written."""
        ts = ts_ns if self.resolution == "ns" else ts_ns // 1000
        data = frame[: self.snaplen]
        return epb_block(ts, data, orig_len=len(frame), direction=direction, comment=comment)

    def write_packet(
        self,
        ts_ns: int,
        frame: bytes | memoryview,
        direction: Direction | None = None,
        comment: str | None = None,
    ) -> int:
        n = self._write(self.packet(ts_ns, frame, direction, comment))
        self.frames_written += 1
        return n

    def write_secrets(self, lines: list[str]) -> int:
        if not lines:
            return 0
        n = self._write(dsb_block(lines))
        self.secrets_written += len(lines)
        return n

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        try:
            self._file.flush()
        finally:
            if self._owned:
                self._file.close()


__all__ = [
    "DSB",
    "EPB",
    "IDB",
    "SECRETS_TLS_KEYLOG",
    "SHB",
    "Pcapng",
    "PcapngPacket",
    "PcapngWriter",
    "dsb_block",
    "encode_block",
    "encode_options",
    "epb_block",
    "idb_block",
    "read_pcapng",
    "shb_block",
]
