"""Bytes the kernel is to cut into wire-sized pieces (generic segmentation offload), and bytes
whose checksum the kernel vouches for (receive checksum offload).

A TCP segment (and then the Ethernet frame carrying it) longer than one MSS of payload travels
as :class:`GsoBytes`: ordinary ``bytes`` that also say how many payload bytes each wire segment
carries. Only a port with offload (``pipeline.io.tap`` with ``offload=True``) turns them into a
``virtio_net_hdr`` for the kernel; nothing else needs to know.
"""

from __future__ import annotations


class GsoBytes(bytes):
    """``bytes`` plus ``gso_size``: the payload bytes per segment the kernel is to produce."""

    gso_size: int = 0


class ChecksumOk(bytes):
    """A received frame whose TCP/UDP checksum the kernel vouches for: it came from the kernel's
    own memory (offload: ``NEEDS_CSUM``/``DATA_VALID``), never a wire, and its field has been
    completed; the transport need not sum it again."""


def gso(data: bytes, gso_size: int) -> GsoBytes:
    out = GsoBytes(data)
    out.gso_size = gso_size
    return out


__all__ = ["ChecksumOk", "GsoBytes", "gso"]
