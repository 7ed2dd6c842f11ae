"""The event-bus interface every component emits through, and the event schema.

Components call ``bus.emit(topic, fields)``; the runtime decides where events go (the ZeroMQ PUB
exporter in ``nf``, a list in tests). The exporter adds the envelope fields ``v``, ``ts``, ``seq``,
``instance`` and ``gen``. A component whose event fields cost something to gather may first ask
``wants(bus, topic)``: False when the bus would discard the event (no collector subscribed to the
topic, ``NullBus``), so the fields need not be built; emitting anyway is always correct.
``SCHEMA`` is the single definition of every topic and field: the README's schema section is
generated from it (``nf schema``) so code and docs cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

SCHEMA_VERSION = 1

ENVELOPE: dict[str, str] = {
    "v": "schema version (1)",
    "ts": "wall clock when the event was published, float seconds since the epoch",
    "seq": "per-instance counter of the events sent to at least one subscription (an event no "
    "subscription matches is not sent and takes no number); a gap means events were dropped, "
    "or, for a collector subscribed to some topics only, sent to other collectors' topics",
    "instance": "name of the tapnf instance that emitted the event",
    "gen": "profile generation in force (bumped by every live profile change)",
}

REASONS: tuple[str, ...] = (
    "resumed",
    "nothing_offered",
    "cache_disabled",
    "tickets_disabled",
    "cache_miss",
    "cache_expired",
    "cache_evicted",
    "ticket_unknown_key",
    "ticket_invalid",
    "ticket_expired",
    "cipher_mismatch",
    "version_mismatch",
    "sni_mismatch",
    "ems_mismatch",
    "strict_resume",
    "binder_invalid",
    "psk_kdf_mismatch",
    "ticket_reused",
)

SCHEMA: dict[str, dict[str, str]] = {
    "tls.handshake": {
        "conn": "connection id (unique per instance)",
        "client": "client address:port",
        "vip": "virtual server address:port",
        "sni": "server_name offered by the client, or null",
        "alpn": "protocol selected by ALPN, or null",
        "version": "negotiated TLS version, e.g. '1.2'",
        "cipher": "negotiated cipher suite (IANA name)",
        "group": "ECDHE group of a full handshake, or null when resumed",
        "offered": "what the client offered for resumption: none|session_id|ticket|psk",
        "outcome": "full|resumed|failed",
        "method": "session_id|ticket|psk_stateless|psk_stateful|null",
        "reason": "one reason code (see REASONS) for the resumption decision, or the failure",
        "session_id": "session ID in the ServerHello (hex; empty when tickets are issued)",
        "client_session_id": "session ID in the ClientHello (hex)",
        "tickets_issued": "number of NewSessionTicket messages sent",
        "ticket_key": "name (hex) of the ticket key that opened or sealed the ticket, never the key",
        "ticket_age_s": "age of the offered ticket in seconds, or null",
        "ems": "extended master secret negotiated (bool)",
        "duration_us": "wall time from ClientHello to Finished, microseconds",
        "cpu_us": "process CPU time spent on this handshake, microseconds",
        "history": "Zeek-style letters: c=ClientHello s=ServerHello x=Certificate k=key exchange "
        "g=ChangeCipherSpec i=client Finished f=server Finished t=NewSessionTicket a=alert",
        "alert": "alert description sent or received on failure, or null",
    },
    "tls.alert": {
        "conn": "connection id",
        "direction": "sent|received",
        "level": "warning|fatal",
        "description": "alert name, e.g. decode_error",
        "reason": "why tapnf sent it (precise cause) or null when received",
    },
    "tls.cache": {
        "profile": "TLS profile name",
        "action": "evicted|expired|flushed",
        "session_id": "hex session ID",
        "age_s": "age of the session in seconds",
    },
    "tls.tickets": {
        "profile": "TLS profile name",
        "action": "installed|promoted|retired|erased",
        "key": "key name (hex), never key material",
    },
    "tcp.flow": {
        "conn": "connection id",
        "action": "opened|closed",
        "client": "client address:port",
        "vip": "virtual server address:port",
        "bytes_in": "payload bytes received from the client",
        "bytes_out": "payload bytes sent to the client",
        "segments_in": "segments received",
        "segments_out": "segments sent",
        "retransmits": "segments retransmitted",
        "out_of_order": "out-of-order segments received",
        "overlap_conflicts": "overlapping segments whose data differed from what was received",
        "duration_s": "flow lifetime in seconds",
        "reason": "close reason: fin|rst_received|rst_sent|timeout|idle|aborted|plugin_error|"
        "backend_refused|backend_timeout|backend_reset|...",
    },
    "tcp.anomaly": {
        "conn": "connection id",
        "kind": "what was seen: overlap_conflict (retransmitted data differing from the first copy)",
        "seq": "sequence number (wire value) where the anomaly starts",
        "length": "bytes concerned",
    },
    "nf.profile": {
        "profile": "TLS profile name",
        "changed": "list of changed keys",
        "source": "control|push|timer",
        "version": "push version number (fleet push), or null",
    },
    "nf.stats": {"counters": "map of counter name to value"},
}


class EventBus(Protocol):
    """Where components send events. Implementations must never block the caller."""

    def emit(self, topic: str, fields: Mapping[str, Any]) -> None: ...


def wants(bus: Any, topic: str) -> bool:
    """Whether ``bus`` would do anything with a ``topic`` event: its ``wants(topic)`` if it has
    one, True otherwise (a bus that cannot tell gets every event)."""
    method = getattr(bus, "wants", None)
    return True if method is None else bool(method(topic))


class NullBus:
    """Discards every event."""

    def emit(self, topic: str, fields: Mapping[str, Any]) -> None:
        return None

    def wants(self, topic: str) -> bool:
        return False


class ListBus:
    """Keeps every event in memory, in order (tests, in-process tools)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, topic: str, fields: Mapping[str, Any]) -> None:
        self.events.append((topic, dict(fields)))

    def wants(self, topic: str) -> bool:
        return True

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [f for t, f in self.events if t == topic]


class TeeBus:
    """Sends every event to ``primary`` and then to each of ``listeners`` (e.g. a capture that
    attaches handshake verdicts to its frames). Listeners must not raise or block."""

    def __init__(self, primary: EventBus, *listeners: EventBus) -> None:
        self.primary = primary
        self.listeners: list[EventBus] = list(listeners)

    def emit(self, topic: str, fields: Mapping[str, Any]) -> None:
        self.primary.emit(topic, fields)
        for listener in self.listeners:
            listener.emit(topic, fields)

    def wants(self, topic: str) -> bool:
        if wants(self.primary, topic):
            return True
        for listener in self.listeners:  # a plain loop: this is asked per event
            if wants(listener, topic):
                return True
        return False


__all__ = [
    "ENVELOPE",
    "REASONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "EventBus",
    "ListBus",
    "NullBus",
    "TeeBus",
    "wants",
]
