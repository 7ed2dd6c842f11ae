"""Why a frame was dropped: the one table of drop reasons, and the decode error that carries one.

Codecs raise :class:`WireError` (a :class:`pipeline.errors.DecodeError`) with a reason from
``DROP_REASONS``; the host stack counts ``drop.<reason>``. A plain ``DecodeError`` (e.g. from
:class:`pipeline.buffer.Buffer`) maps to ``truncated`` when its message says so, else ``malformed``.
"""

from __future__ import annotations

from pipeline.errors import DecodeError

DROP_REASONS: dict[str, str] = {
    "truncated": "shorter than its header or than a length field says",
    "bad_length": "a length field is inconsistent (IPv4 total length below the header, ...)",
    "bad_checksum": "header or upper-layer checksum does not verify",
    "bad_version": "IP version field does not match the ethertype",
    "fragment": "an IP fragment (tapnf does not reassemble)",
    "unsupported": "a protocol, option or VLAN tag tapnf does not handle",
    "malformed": "fields that cannot be valid (bad option length, bad hardware type, ...)",
    "not_for_us": "addressed to another MAC or IP address",
    "bad_source": "source address is multicast/broadcast or otherwise invalid",
    "bad_hop_limit": "neighbour discovery message not sent with hop limit 255",
    "no_transport": "TCP for a virtual IP but no transport handler is attached",
    "too_big": "an outbound packet larger than the MTU",
    "queue_full": "outbound packet refused: too many packets wait for one neighbour",
    "pending_full": "outbound packet refused: too many neighbours being resolved",
    "unresolved": "queued packet discarded: the neighbour never answered ARP/NS",
    "tx_full": "outbound frame refused: the transmit queue is full",
    "stage": "a packet stage returned False",
    "internal": "a bug: an unexpected exception while handling the frame (counted, never raised)",
}


class WireError(DecodeError):
    """A decode error with its drop reason (a key of ``DROP_REASONS``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def reason_of(exc: DecodeError) -> str:
    """The drop reason of a decode error."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason in DROP_REASONS:
        return reason
    return "truncated" if str(exc).startswith("truncated") else "malformed"


__all__ = ["DROP_REASONS", "WireError", "reason_of"]
