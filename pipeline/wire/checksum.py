"""Internet checksum (RFC 1071) and the TCP/UDP pseudo-header sums for IPv4 and IPv6."""

from __future__ import annotations


def ones_sum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """Folded 16-bit one's-complement sum of ``data`` (odd length padded with a zero byte).

    The whole buffer is read as one big integer: since 2^16 ≡ 1 (mod 0xFFFF), its residue mod
    0xFFFF equals the one's-complement sum of its 16-bit words, with 0xFFFF standing for a
    non-zero multiple. One C-level pass instead of a Python loop per word; an odd length is
    padded by shifting the integer, not by copying the bytes.
    """
    total = int.from_bytes(data, "big")
    if len(data) & 1:
        total <<= 8
    s = total % 0xFFFF
    if s == 0 and total:
        s = 0xFFFF
    if start:
        s += start
        while s > 0xFFFF:
            s = (s & 0xFFFF) + (s >> 16)
    return s


def sums_to_ones(data: bytes | bytearray | memoryview) -> bool:
    """True when ``data`` (its checksum field included) checks out: the folded sum is all ones,
    i.e. the big integer's residue mod 0xFFFF is 0 and ``data`` is not all zeros. The per-frame
    check (IPv4 header, ICMP echo): ``ones_sum(data) == 0xFFFF`` in one expression."""
    whole = int.from_bytes(data, "big")
    if len(data) & 1:
        whole <<= 8
    return not whole % 0xFFFF and whole != 0


def checksum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The Internet checksum of ``data``; ``start`` is a partial sum (e.g. a pseudo-header)."""
    s = ones_sum(data, start)
    return (~s) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial sum of the IPv4 (4-byte addresses) or IPv6 (16-byte) pseudo-header."""
    if len(src) == 4:
        ph = src + dst + bytes((0, proto)) + length.to_bytes(2, "big")
    else:
        ph = src + dst + length.to_bytes(4, "big") + bytes((0, 0, 0, proto))
    return ones_sum(ph)


def verify(data: bytes | bytearray | memoryview, start: int = 0) -> bool:
    """True when ``data`` (checksum field included) sums to all ones."""
    s = ones_sum(data, start)
    return s == 0xFFFF or s == 0
