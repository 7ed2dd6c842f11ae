"""Wrapping 32-bit sequence-number arithmetic (RFC 9293 §3.4, RFC 1982).

The endpoint keeps its sequence variables *unwrapped* (plain ints that keep growing past 2^32 so
comparisons and buffer offsets stay simple); every number that crosses the wire goes through
``wire()`` on the way out and ``unwrap()`` on the way in, which is where the modular arithmetic
lives. ``seq_lt`` and friends compare two wire values the RFC way.
"""

from __future__ import annotations

MASK = 0xFFFFFFFF
HALF = 0x80000000


def wire(seq: int) -> int:
    """The 32-bit wire value of an unwrapped sequence number."""
    return seq & MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 32-bit sequence numbers, in [-2^31, 2^31)."""
    d = (a - b) & MASK
    return d - 0x100000000 if d >= HALF else d


def unwrap(value: int, near: int) -> int:
    """The unwrapped sequence number closest to ``near`` whose wire value is ``value``."""
    return near + seq_diff(value, near & MASK)


def seq_lt(a: int, b: int) -> bool:
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0


def seq_add(a: int, n: int) -> int:
    return (a + n) & MASK


__all__ = ["MASK", "seq_add", "seq_diff", "seq_ge", "seq_gt", "seq_le", "seq_lt", "unwrap", "wire"]
